// Package version holds the klab version, set at build time with
// -ldflags "-X github.com/klab-dev/klab/internal/version.Version=...".
package version

import "runtime/debug"

// Version is the release or git description of this build.
var Version = "dev"

// String returns the version with the VCS revision when the build recorded one.
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" || Version != "dev" {
		return Version
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return Version + "+" + rev
}
