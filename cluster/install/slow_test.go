package install

import (
	"testing"

	"github.com/klab-dev/klab/provision"
)

// slowProvider is a provider whose machines are n times slower.
type slowProvider struct {
	provision.Provider
	n int
}

func (p slowProvider) Slowdown(*provision.Cluster) int { return p.n }

func TestSlowdown(t *testing.T) {
	c := &provision.Cluster{Name: "x"}
	for _, tc := range []struct {
		p    provision.Provider
		want int
	}{
		{struct{ provision.Provider }{}, 1}, // a provider that does not say: as fast as the host
		{slowProvider{n: 5}, 5},
		{slowProvider{n: 1}, 1},
		{slowProvider{n: 0}, 1}, // never shorter
	} {
		if got := Slowdown(tc.p, c); got != tc.want {
			t.Errorf("Slowdown(%T %+v) = %d, want %d", tc.p, tc.p, got, tc.want)
		}
	}
}
