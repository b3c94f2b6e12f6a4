// Package nsrun runs Go code inside a network namespace. A namespace
// belongs to an OS thread, not to a goroutine, and Go moves goroutines
// between threads; so the code runs on a fresh goroutine locked to its
// thread, which enters the namespace and comes back before it is unlocked
// (the reasons are those of containernetworking/plugins' pkg/ns).
package nsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// In runs fn on a thread inside the network namespace h (called name in
// errors) and waits for it. If the thread cannot come back, it stays
// locked and ends with its goroutine, so no other goroutine ever runs in
// the wrong namespace. fn must not start goroutines that expect to be in
// the namespace; a process that fn starts (os/exec) is forked from the
// locked thread, so it starts in the namespace. fn may itself switch the
// thread to another namespace (netns.NewNamed does): In still returns the
// thread to where it was.
func In(h netns.NsHandle, name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
