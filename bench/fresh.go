package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// freshResult is how quickly the daemon follows changes in EC2.
type freshResult struct {
	PollInterval time.Duration
	// TagTo200: from a session tag appearing on a running instance to the first 200 for it.
	TagTo200 []time.Duration
	// TermTo404: from an instance's termination to the first 404 for its session.
	TermTo404 []time.Duration
}

// measureFreshness runs a daemon polling every interval against fake (holding an n-instance
// fleet) and measures trials tag-to-200 and termination-to-404 delays. The daemon is asked
// every 5ms (tagging) or 20ms (termination), so the figures are accurate to that.
func measureFreshness(ctx context.Context, bin, dir string, fake *fakeEC2, n int, interval time.Duration, trials int, p placement) (*freshResult, error) {
	d, err := startDaemon(bin, dir, daemonOptions{fakeURL: fake.url, pollInterval: interval, requestLevel: "off"}, p)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	if err := d.waitReady(3 * time.Minute); err != nil {
		return nil, err
	}
	res := &freshResult{PollInterval: interval}
	for t := range trials {
		// Instances with one session, spread over the fleet and never the same twice.
		k := (n/trials*t + 1 + 2*t) % n
		if k%multiEvery == 0 {
			k++
		}
		session := fmt.Sprintf("fresh-%d", t)
		if err := fake.setTag(instanceID(k), "dcv:session-id", sessionTag(k)+" "+session); err != nil {
			return nil, err
		}
		took, err := waitStatus(ctx, d, session, http.StatusOK, 5*time.Millisecond, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("tag to 200: %w", err)
		}
		res.TagTo200 = append(res.TagTo200, took)
	}
	for t := range trials {
		k := (n/trials*t + 3 + 2*t) % n
		if k%multiEvery == 0 {
			k++
		}
		session := sessionTag(k)
		if st, err := d.resolve(ctx, session); err != nil || st != http.StatusOK {
			return nil, fmt.Errorf("%s before termination: %d %v", session, st, err)
		}
		if err := fake.setState(instanceID(k), "terminated"); err != nil {
			return nil, err
		}
		took, err := waitStatus(ctx, d, session, http.StatusNotFound, 20*time.Millisecond, 3*interval+2*time.Minute)
		if err != nil {
			return nil, fmt.Errorf("termination to 404: %w", err)
		}
		res.TermTo404 = append(res.TermTo404, took)
	}
	return res, nil
}

// waitStatus asks the daemon about session every step until it answers want, and returns how
// long that took.
func waitStatus(ctx context.Context, d *daemonProc, session string, want int, step, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < timeout {
		st, err := d.resolve(ctx, session)
		if err != nil {
			return 0, err
		}
		if st == want {
			return time.Since(start), nil
		}
		time.Sleep(step)
	}
	return 0, fmt.Errorf("%s: no %d within %s", session, want, timeout)
}
