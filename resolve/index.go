// Package resolve keeps the session index the gateway is answered from: sources publish whole
// target lists, the Index merges them into an immutable Snapshot swapped in atomically, and the
// Resolver adds rate-limited on-miss lookups for sessions the index does not know yet.
package resolve

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// Snapshot is one immutable view of every known session. Readers load it once per request and
// never lock; writers build a new one and swap it in.
type Snapshot struct {
	sessions map[string]*discovery.Target
	// found holds targets found by on-miss lookups since their region's last full poll.
	found     map[string]foundTarget
	instances int
	sources   map[string]SourceStats
}

type foundTarget struct {
	target *discovery.Target
	at     time.Time
}

// SourceStats counts what one source contributed to a snapshot.
type SourceStats struct {
	Sessions, Targets int
	Updated           time.Time
}

// Lookup returns the target serving sessionID, or nil.
func (s *Snapshot) Lookup(sessionID string) *discovery.Target {
	if t, ok := s.sessions[sessionID]; ok {
		return t
	}
	if f, ok := s.found[sessionID]; ok {
		return f.target
	}
	return nil
}

// Sessions is how many session IDs the snapshot resolves from full polls and files.
func (s *Snapshot) Sessions() int { return len(s.sessions) }

// Instances is how many targets the snapshot holds, whether or not they won every session.
func (s *Snapshot) Instances() int { return s.instances }

// Sources returns per-source statistics, keyed by source name.
func (s *Snapshot) Sources() map[string]SourceStats { return s.sources }

// Source names a publisher of targets. Pinned sources (the sessions file) win every conflict
// with unpinned ones (EC2 regions).
type Source struct {
	Name   string
	Pinned bool
}

type sourceData struct {
	src     Source
	targets []discovery.Target
	updated time.Time
}

// Index merges what every source last published into the current Snapshot. Publishing is
// serialised; reading is a single atomic load.
type Index struct {
	log     *zap.Logger
	metrics *Metrics
	cur     atomic.Pointer[Snapshot]

	mu        sync.Mutex
	sources   map[string]*sourceData
	conflicts map[string]string // session ID -> losing target, to log each conflict once
	maxFound  int
}

// NewIndex returns an empty Index. A nil logger discards logs; m (may be nil) receives the
// metrics of the index, its refreshers and its resolver.
func NewIndex(log *zap.Logger, m *Metrics) *Index {
	if log == nil {
		log = zap.NewNop()
	}
	ix := &Index{
		log:       log,
		metrics:   m,
		sources:   make(map[string]*sourceData),
		conflicts: make(map[string]string),
		maxFound:  10000,
	}
	ix.cur.Store(&Snapshot{sessions: map[string]*discovery.Target{}, sources: map[string]SourceStats{}})
	return ix
}

// Load returns the current snapshot.
func (ix *Index) Load() *Snapshot { return ix.cur.Load() }

// Lookup resolves sessionID against the current snapshot.
func (ix *Index) Lookup(sessionID string) *discovery.Target { return ix.cur.Load().Lookup(sessionID) }

// Publish replaces everything src reported before with targets, as seen by a poll that started
// at polledAt, and swaps in the merged snapshot. On-miss finds of the same source older than
// the poll are dropped: the poll has seen them, or they are gone.
func (ix *Index) Publish(src Source, targets []discovery.Target, polledAt time.Time) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.sources[src.Name] = &sourceData{src: src, targets: targets, updated: time.Now()}
	old := ix.cur.Load()
	found := make(map[string]foundTarget, len(old.found))
	for id, f := range old.found {
		if f.target.Region == src.Name && !src.Pinned && f.at.Before(polledAt) {
			continue
		}
		found[id] = f
	}
	ix.cur.Store(ix.build(found))
}

// Forget removes a source and everything it published, for a source that is no longer
// configured.
func (ix *Index) Forget(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.sources[name]; !ok {
		return
	}
	delete(ix.sources, name)
	ix.cur.Store(ix.build(ix.cur.Load().found))
	ix.metrics.forget(name)
}

// AddFound serves t, found by an on-miss lookup, until its region's next full poll.
func (ix *Index) AddFound(t *discovery.Target, sessionID string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.cur.Load()
	if len(old.found) >= ix.maxFound {
		return // the next full poll will have it; don't let lookups grow the overlay without bound
	}
	found := make(map[string]foundTarget, len(old.found)+1)
	for id, f := range old.found {
		found[id] = f
	}
	found[sessionID] = foundTarget{target: t, at: time.Now()}
	next := *old
	next.found = found
	ix.cur.Store(&next)
}

// build merges all sources into a new snapshot. Pinned sources go first and win; among the
// rest the later launch wins, ties broken by instance ID, so every gateway agrees.
func (ix *Index) build(found map[string]foundTarget) *Snapshot {
	names := make([]string, 0, len(ix.sources))
	total, instances := 0, 0
	for name, sd := range ix.sources {
		names = append(names, name)
		instances += len(sd.targets)
		for i := range sd.targets {
			total += len(sd.targets[i].SessionIDs)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := ix.sources[names[i]], ix.sources[names[j]]
		if a.src.Pinned != b.src.Pinned {
			return a.src.Pinned
		}
		return names[i] < names[j]
	})

	snap := &Snapshot{
		sessions:  make(map[string]*discovery.Target, total),
		found:     found,
		instances: instances,
		sources:   make(map[string]SourceStats, len(names)),
	}
	pinned := make(map[*discovery.Target]bool)
	conflicts := make(map[string]string)
	for _, name := range names {
		sd := ix.sources[name]
		stats := SourceStats{Targets: len(sd.targets), Updated: sd.updated}
		for i := range sd.targets {
			t := &sd.targets[i]
			if sd.src.Pinned {
				pinned[t] = true
			}
			for _, id := range t.SessionIDs {
				stats.Sessions++
				cur, ok := snap.sessions[id]
				if !ok {
					snap.sessions[id] = t
					continue
				}
				winner, loser := cur, t
				if !pinned[cur] && newer(t, cur) {
					winner, loser = t, cur
				}
				snap.sessions[id] = winner
				conflicts[id] = loser.Name()
				if ix.conflicts[id] != loser.Name() {
					ix.log.Warn("session claimed by two hosts; serving one",
						zap.String("session", id), zap.String("serving", winner.Name()),
						zap.String("ignoring", loser.Name()), zap.Bool("pinned", pinned[winner]))
				}
			}
		}
		snap.sources[name] = stats
	}
	ix.conflicts = conflicts
	ix.metrics.snapshot(snap, len(conflicts))
	return snap
}

// newer reports whether a wins a conflict with b: launched later, or at the same time with the
// greater instance ID.
func newer(a, b *discovery.Target) bool {
	if !a.LaunchTime.Equal(b.LaunchTime) {
		return a.LaunchTime.After(b.LaunchTime)
	}
	return a.Name() > b.Name()
}
