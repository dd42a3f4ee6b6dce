package resolve

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func target(id, host string, launched time.Time, sessions ...string) discovery.Target {
	return discovery.Target{
		SessionIDs: sessions, Host: host, HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/",
		InstanceID: id, Region: "us-east-1", LaunchTime: launched,
	}
}

var (
	east = Source{Name: "us-east-1"}
	west = Source{Name: "us-west-2"}
	file = Source{Name: "file", Pinned: true}
)

func hostOf(ix *Index, session string) string {
	if t := ix.Lookup(session); t != nil {
		return t.Host
	}
	return ""
}

func TestIndexPublishReplacesSource(t *testing.T) {
	ix := NewIndex(nil, nil)
	ix.Publish(east, []discovery.Target{target("i-1", "a", t0, "s1", "s2"), target("i-2", "b", t0, "s3")}, time.Now())
	if got := hostOf(ix, "s2"); got != "a" {
		t.Fatalf("s2 -> %q, want a", got)
	}
	snap := ix.Load()
	if snap.Sessions() != 3 || snap.Instances() != 2 {
		t.Fatalf("sessions %d instances %d, want 3 and 2", snap.Sessions(), snap.Instances())
	}

	// The next poll no longer reports i-1 (terminated): its sessions disappear.
	ix.Publish(east, []discovery.Target{target("i-2", "b", t0, "s3")}, time.Now())
	if got := hostOf(ix, "s1"); got != "" {
		t.Fatalf("s1 still resolves to %q after its instance left", got)
	}
	// The snapshot loaded before the swap is unchanged: readers never see a half-built index.
	if snap.Lookup("s1") == nil || snap.Sessions() != 3 {
		t.Fatal("published snapshot was modified")
	}
}

func TestIndexSourcesAreIndependent(t *testing.T) {
	ix := NewIndex(nil, nil)
	ix.Publish(east, []discovery.Target{target("i-1", "a", t0, "s1")}, time.Now())
	ix.Publish(west, []discovery.Target{target("i-2", "b", t0, "s2")}, time.Now())
	ix.Publish(east, nil, time.Now())
	if hostOf(ix, "s2") != "b" || hostOf(ix, "s1") != "" {
		t.Fatalf("s1=%q s2=%q, want \"\" and b", hostOf(ix, "s1"), hostOf(ix, "s2"))
	}
	if st := ix.Load().Sources()["us-west-2"]; st.Sessions != 1 || st.Targets != 1 {
		t.Fatalf("west stats %+v", st)
	}
	ix.Forget("us-west-2")
	if hostOf(ix, "s2") != "" {
		t.Fatal("forgotten source still served")
	}
}

func TestIndexConflicts(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	ix := NewIndex(zap.New(core), nil)
	older := target("i-old", "old", t0, "dup")
	newer := target("i-new", "new", t0.Add(time.Minute), "dup")

	// The later launch wins whatever the order, across regions too.
	ix.Publish(east, []discovery.Target{newer, older}, time.Now())
	if got := hostOf(ix, "dup"); got != "new" {
		t.Fatalf("dup -> %q, want new", got)
	}
	ix.Publish(east, []discovery.Target{older}, time.Now())
	ix.Publish(west, []discovery.Target{newer}, time.Now())
	if got := hostOf(ix, "dup"); got != "new" {
		t.Fatalf("cross-region dup -> %q, want new", got)
	}
	if n := logs.FilterMessage("session claimed by two hosts; serving one").Len(); n != 2 {
		t.Fatalf("%d conflict warnings, want 2 (one per new conflict)", n)
	}
	// The same conflict seen again by the next poll is not logged again.
	ix.Publish(west, []discovery.Target{newer}, time.Now())
	if n := logs.FilterMessage("session claimed by two hosts; serving one").Len(); n != 2 {
		t.Fatalf("repeated conflict logged again: %d warnings", n)
	}

	// Equal launch times: the greater instance ID wins, so every gateway agrees.
	tieA := target("i-a", "ha", t0, "tie")
	tieB := target("i-b", "hb", t0, "tie")
	for _, order := range [][]discovery.Target{{tieA, tieB}, {tieB, tieA}} {
		ix.Publish(east, order, time.Now())
		if got := hostOf(ix, "tie"); got != "hb" {
			t.Fatalf("tie -> %q, want hb", got)
		}
	}
}

func TestIndexFileWins(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	ix := NewIndex(zap.New(core), nil)
	pinned := discovery.Target{SessionIDs: []string{"s1"}, Host: "pinned", HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/"}
	ix.Publish(east, []discovery.Target{target("i-1", "ec2", t0.Add(time.Hour), "s1")}, time.Now())
	ix.Publish(file, []discovery.Target{pinned}, time.Now())
	if got := hostOf(ix, "s1"); got != "pinned" {
		t.Fatalf("s1 -> %q, want the file's host", got)
	}
	entry := logs.FilterMessage("session claimed by two hosts; serving one").All()
	if len(entry) != 1 || entry[0].ContextMap()["pinned"] != true {
		t.Fatalf("want one conflict warning saying the file won, got %v", entry)
	}
}

func TestIndexFoundOverlay(t *testing.T) {
	ix := NewIndex(nil, nil)
	found := target("i-9", "fresh", t0, "late")
	ix.AddFound(&found, "late")
	if hostOf(ix, "late") != "fresh" {
		t.Fatal("found target not served")
	}
	// A poll that started before the find does not drop it: it may not have seen the tag.
	ix.Publish(east, nil, time.Now().Add(-time.Minute))
	if hostOf(ix, "late") != "fresh" {
		t.Fatal("found target dropped by an older poll")
	}
	// Another region's poll leaves it alone too.
	ix.Publish(west, nil, time.Now())
	if hostOf(ix, "late") != "fresh" {
		t.Fatal("found target dropped by another region's poll")
	}
	// Its region's next full poll takes over: gone when that poll did not report it.
	ix.Publish(east, nil, time.Now())
	if hostOf(ix, "late") != "" {
		t.Fatal("found target outlived its region's next poll")
	}
}

func TestIndexConcurrentReadersNeverLock(t *testing.T) {
	ix := NewIndex(nil, nil)
	targets := make([]discovery.Target, 100)
	for i := range targets {
		targets[i] = target(fmt.Sprintf("i-%d", i), "h", t0, fmt.Sprintf("s%d", i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := ix.Load()
				// Within one snapshot either all of a poll is visible or none of it.
				if n := snap.Sessions(); n != 0 && n != 100 {
					t.Errorf("torn snapshot with %d sessions", n)
					return
				}
			}
		})
	}
	for range 200 {
		ix.Publish(east, targets, time.Now())
		ix.Publish(east, nil, time.Now())
	}
	close(stop)
	wg.Wait()
}
