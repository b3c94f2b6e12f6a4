package controllers

import (
	"sync"
	"time"
)

// expectationsTTL bounds how long a controller waits for the informer to
// show pods it created or deleted before it trusts its cache again.
const expectationsTTL = 5 * time.Minute

// expectations counts, per controller key, the creations and deletions it
// has asked for and not yet seen through its informer. Until they are all
// seen the informer's picture is stale, and acting on it would create or
// delete the same pods twice.
type expectations struct {
	mu sync.Mutex
	m  map[string]*expected
}

type expected struct {
	adds, dels int
	at         time.Time
}

func newExpectations() *expectations { return &expectations{m: map[string]*expected{}} }

// expect records that adds creations and dels deletions are under way.
func (e *expectations) expect(key string, adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expected{adds: adds, dels: dels, at: time.Now()}
}

// observed lowers the count after a creation (add true) or deletion was
// seen, or after one that was asked for failed.
func (e *expectations) observed(key string, add bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return
	}
	if add {
		x.adds--
	} else {
		x.dels--
	}
}

// satisfied reports whether nothing is pending (or what was pending is
// too old to still wait for).
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	return !ok || x.adds <= 0 && x.dels <= 0 || time.Since(x.at) > expectationsTTL
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
