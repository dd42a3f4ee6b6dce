// Command bench measures dcv-ec2-resolver the way it runs: the real daemon binary, built by
// the harness, serving a synthetic fleet from a fake EC2 endpoint on loopback, loaded over
// HTTP/1.1 keep-alive connections side by side with a minimal net/http server (the
// "ceiling") that answers the same requests with a constant body. Run it from the module:
//
//	go run ./bench [-sizes 1000,10000,100000] [-rounds 3] [-duration 1.2s] [-out FILE]
//
// For each fleet size it measures, in this order:
//
//   - Poll cost, in this process with the daemon's own code (ec2.LoadAWSConfig, ec2.Source,
//     resolve.Index): Source.Poll, the SDK's paging and decoding alone, the conversion of
//     decoded pages into targets alone, Index.Publish, the DescribeInstances calls of one full
//     refresh, and the heap the published index retains per session.
//   - Three daemons (default configuration but for the fake endpoint, a long poll interval
//     and a larger on-miss budget): as configured by default (one request line logged per
//     request), with log.request-level = "off", and serving TLS with a self-signed
//     certificate. Their CPU to the first full poll and RSS (from /proc); then rounds of
//     closed-loop load runs, back to back: the ceiling, the daemon with known IDs, with
//     request lines off, with 90% unknown IDs (answered from the negative cache, warmed
//     first), the TLS ceiling and the TLS daemon, and paced (open-loop) runs of the ceiling
//     and the daemon, for latency below saturation; then the daemon's peak RSS.
//   - Freshness, with a daemon polling every 2s: from a session tag appearing on a running
//     instance to the first 200 (the on-miss lookup), and from termination to the first 404.
//
// Every server, the fake EC2 endpoint and the load generator run in processes of their own
// (this binary re-executed in a role, see roleEnv), and exit when the harness does. On a
// machine with two or more CPUs and taskset, the server under test is pinned to CPU 0 with
// GOMAXPROCS=1 and the load generator to CPU 1 with GOMAXPROCS=1 (-pin=off shares every CPU
// instead): server and generator never compete for a core, so the ratio to the ceiling is the
// ratio of the servers' per-core efficiency. Other processes on the machine still compete:
// run it on a quiet machine. All traffic stays on 127.0.0.1, and every load run is bounded in
// time and in requests.
//
// The results are printed as Markdown (and written to -out): a goals table, then the figures
// behind it, ready for BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type options struct {
	sizes        []int
	duration     time.Duration
	rounds       int
	rate         float64
	warmup       time.Duration
	conns        int
	unknown      float64
	unknownPool  int
	maxRequests  int64
	pin          bool
	tls          bool
	freshness    bool
	freshTrials  int
	freshPoll    time.Duration
	loadPoll     time.Duration
	bin          string
	out          string
	profileDir   string
	requestLevel string
	busyBefore   float64 // share of the machine's CPU busy just before the run
	server, load placement
}

func main() {
	switch role := os.Getenv(roleEnv); role {
	case "":
	case "fake":
		os.Exit(serveFake(os.Args[1:]))
	case "ceiling":
		os.Exit(serveCeiling(os.Args[1:]))
	case "load":
		os.Exit(runLoad(os.Args[1:]))
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown role %q\n", role)
		os.Exit(2)
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	sizes := fs.String("sizes", "1000,10000,100000", "comma-separated fleet `sizes` (instances)")
	fs.DurationVar(&o.duration, "duration", 1200*time.Millisecond, "measured length of each load run")
	fs.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "unmeasured warm-up before each load run")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of ceiling and resolver runs, back to back (medians are reported)")
	fs.Float64Var(&o.rate, "rate", 5000, "requests per second of the paced latency runs (0: none)")
	fs.IntVar(&o.conns, "conns", 64, "persistent HTTP/1.1 connections of the load generator")
	fs.Float64Var(&o.unknown, "unknown", 0.9, "share of unknown session IDs in the negative-cache run")
	fs.IntVar(&o.unknownPool, "unknown-pool", 64, "distinct unknown session IDs in the negative-cache run")
	fs.Int64Var(&o.maxRequests, "max-requests", 10_000_000, "bound on the requests of one load run")
	pin := fs.String("pin", "auto", "pin server and load generator to CPUs 0 and 1: on, off or auto (on with 2+ CPUs and taskset)")
	fs.BoolVar(&o.tls, "tls", true, "also measure over TLS")
	fs.BoolVar(&o.freshness, "freshness", true, "also measure freshness")
	fs.IntVar(&o.freshTrials, "fresh-trials", 2, "trials of each freshness measurement")
	fs.DurationVar(&o.freshPoll, "fresh-poll", 2*time.Second, "poll interval of the freshness daemon")
	fs.DurationVar(&o.loadPoll, "load-poll", 90*time.Second, "poll interval of the daemons under load (long enough that no poll lands in a run)")
	fs.StringVar(&o.bin, "bin", "", "daemon `binary` to run (default: build ./cmd/dcv-ec2-resolver)")
	fs.StringVar(&o.out, "out", "", "also write the report to this `file`")
	fs.StringVar(&o.requestLevel, "request-level", "", "the daemons' log.request-level (default: the daemon's default, info)")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU and heap profiles of the in-process poll to this `dir`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 10 {
			return nil, fmt.Errorf("-sizes: %q is not a fleet size (10 or more)", s)
		}
		o.sizes = append(o.sizes, n)
	}
	_, tasksetErr := exec.LookPath("taskset")
	switch *pin {
	case "on":
		if tasksetErr != nil {
			return nil, fmt.Errorf("-pin=on: %v", tasksetErr)
		}
		o.pin = true
	case "off":
	case "auto":
		o.pin = tasksetErr == nil && runtime.NumCPU() >= 2
	default:
		return nil, fmt.Errorf("-pin: %q is not on, off or auto", *pin)
	}
	if o.pin {
		o.server = placement{cpus: "0", gomaxprocs: 1}
		o.load = placement{cpus: "1", gomaxprocs: 1}
	}
	if o.conns < 1 || o.duration <= 0 || o.rounds < 1 || o.rate < 0 || o.unknown < 0 || o.unknown > 1 || o.unknownPool < 1 {
		return nil, fmt.Errorf("bad -conns, -duration, -rounds, -rate, -unknown or -unknown-pool")
	}
	return o, nil
}

// sizeResult is everything measured at one fleet size.
type sizeResult struct {
	n, sessions int
	poll        *pollResult

	// The default daemon: CPU to its first full poll (start-up included) and RSS.
	readyCPU      time.Duration
	rssReady      int64
	rssAfter, hwm int64

	// One entry per round; each round runs all of them back to back.
	ceiling, hit, hitNoLog, unknown []*loadResult
	ceilingTLS, hitTLS              []*loadResult
	// Paced at -rate requests per second, for latency below saturation.
	pacedCeiling, pacedHit []*loadResult

	warmCalls       int // DescribeInstances calls that warmed the negative cache
	callsDuringLoad int // DescribeInstances calls during the load runs (should be 0)

	fresh *freshResult
}

func run(o *options) error {
	ctx := context.Background()
	started := time.Now()
	dir, err := os.MkdirTemp("", "dcv-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The in-process poll uses the daemon's credential chain: fake keys, no IMDS, no files.
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDFAKE", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_SESSION_TOKEN": "",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "aws-credentials"),
	} {
		os.Setenv(k, v)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}

	bin := o.bin
	if bin == "" {
		logf("building the daemon")
		if bin, err = buildDaemon(dir); err != nil {
			return err
		}
	}
	var certs *certFiles
	if o.tls {
		if certs, err = selfSigned(dir); err != nil {
			return err
		}
	}

	o.busyBefore = machineBusy(time.Second)
	var results []*sizeResult
	for _, n := range o.sizes {
		r, err := measureSize(ctx, o, bin, dir, certs, n)
		if err != nil {
			return fmt.Errorf("%d instances: %w", n, err)
		}
		results = append(results, r)
	}

	report := renderReport(o, results, time.Since(started))
	fmt.Print(report)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(report), 0o644)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func measureSize(ctx context.Context, o *options, bin, dir string, certs *certFiles, n int) (*sizeResult, error) {
	r := &sizeResult{n: n, sessions: sessionsOf(n)}
	logf("%d instances: starting the fake EC2 endpoint", n)
	fake, err := startFake(n, placement{})
	if err != nil {
		return nil, err
	}
	defer fake.stop()

	logf("%d instances: poll cost", n)
	if r.poll, err = measurePoll(ctx, fake, n, o.profileDir); err != nil {
		return nil, fmt.Errorf("poll cost: %w", err)
	}

	// Three daemons at once, each polling the fake once at start: the default one, one with
	// request lines off, one serving TLS. Only the one under load is busy.
	logf("%d instances: starting the daemons", n)
	var daemons [3]*daemonProc
	for i, do := range []daemonOptions{
		{requestLevel: o.requestLevel},
		{requestLevel: "off"},
		{requestLevel: o.requestLevel, tls: certs},
	} {
		if i == 2 && !o.tls {
			break
		}
		do.fakeURL, do.pollInterval = fake.url, o.loadPoll
		if daemons[i], err = startDaemon(bin, filepath.Join(dir, fmt.Sprint("daemon", i)), do, o.server); err != nil {
			return nil, err
		}
		defer daemons[i].stop()
	}
	for _, d := range daemons {
		if d != nil {
			if err := d.waitReady(3 * time.Minute); err != nil {
				return nil, err
			}
		}
	}
	d, dOff, dTLS := daemons[0], daemons[1], daemons[2]
	r.readyCPU, _ = cpuTime(d.pid())
	r.rssReady, _, _ = memStatus(d.pid())

	// Warm the negative cache: one on-miss lookup per unknown ID; the runs then only hit it.
	calls0, err := fake.calls()
	if err != nil {
		return nil, err
	}
	for _, id := range unknownSessions(o.unknownPool) {
		if st, err := d.resolve(ctx, id); err != nil || st != 404 {
			return nil, fmt.Errorf("unknown session %s: %d %v", id, st, err)
		}
	}
	calls1, err := fake.calls()
	if err != nil {
		return nil, err
	}
	r.warmCalls = calls1 - calls0

	ceil, err := startCeiling(o.server, nil)
	if err != nil {
		return nil, err
	}
	defer ceil.stop()
	var ceilTLS *ceilingProc
	if o.tls {
		if ceilTLS, err = startCeiling(o.server, certs); err != nil {
			return nil, err
		}
		defer ceilTLS.stop()
	}

	logf("%d instances: load", n)
	spec := loadSpec{Conns: o.conns, Warmup: o.warmup, Duration: o.duration, MaxRequests: o.maxRequests,
		Fleet: n, UnknownPool: o.unknownPool}
	unknownSpec := spec
	unknownSpec.Unknown = o.unknown
	tlsSpec := spec
	if o.tls {
		tlsSpec.TLS, tlsSpec.CAFile = true, certs.cert
	}
	for round := range o.rounds {
		seed := uint64(n*100 + round)
		spec.Seed, unknownSpec.Seed, tlsSpec.Seed = seed, seed, seed
		runs := []loadRun{
			{"ceiling", spec, ceil, &r.ceiling},
			{"resolver", spec, d, &r.hit},
			{"resolver, request-level off", spec, dOff, &r.hitNoLog},
			{"resolver, unknown IDs", unknownSpec, d, &r.unknown},
		}
		if o.tls {
			runs = append(runs, loadRun{"TLS ceiling", tlsSpec, ceilTLS, &r.ceilingTLS},
				loadRun{"TLS resolver", tlsSpec, dTLS, &r.hitTLS})
		}
		if o.rate > 0 {
			paced := spec
			paced.Rate = o.rate
			runs = append(runs, loadRun{"paced ceiling", paced, ceil, &r.pacedCeiling},
				loadRun{"paced resolver", paced, d, &r.pacedHit})
		}
		if round%2 == 1 {
			slices.Reverse(runs) // so that a drift in the machine's speed favours no one
		}
		for _, run := range runs {
			res, err := loadAt(run.spec, run.server, o.load)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", run.name, err)
			}
			*run.into = append(*run.into, res)
		}
	}
	calls2, err := fake.calls()
	if err != nil {
		return nil, err
	}
	r.callsDuringLoad = calls2 - calls1
	r.rssAfter, r.hwm, _ = memStatus(d.pid())
	for _, d := range daemons {
		if d != nil {
			d.stop()
		}
	}
	ceil.stop()
	if ceilTLS != nil {
		ceilTLS.stop()
	}

	if o.freshness {
		logf("%d instances: freshness", n)
		if r.fresh, err = measureFreshness(ctx, bin, filepath.Join(dir, "fresh"), fake, n, o.freshPoll, o.freshTrials, o.server); err != nil {
			return nil, fmt.Errorf("freshness: %w", err)
		}
	}
	return r, nil
}

// loadRun is one run of a round, and where its result goes.
type loadRun struct {
	name   string
	spec   loadSpec
	server server
	into   *[]*loadResult
}

// server is a server under test: its address and process.
type server interface {
	address() string
	pid() int
}

func (d *daemonProc) address() string  { return d.addr }
func (c *ceilingProc) address() string { return c.addr }
func (c *ceilingProc) pid() int        { return c.cmd.Process.Pid }

// loadAt runs spec against s in a load-generator child at p.
func loadAt(spec loadSpec, s server, p placement) (*loadResult, error) {
	spec.Addr = s.address()
	return runLoadChild(spec, p, s.pid())
}
