package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// renderReport formats the results as Markdown.
func renderReport(o *options, results []*sizeResult, took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("## Machine and settings\n\n")
	p("- CPU: %s, %d CPUs; Go %s %s/%s; %s\n", cpuModel(), runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"),
		runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
	if o.pin {
		p("- Placement: server under test (daemon or ceiling) on CPU 0 with GOMAXPROCS=1, load generator on CPU 1 with GOMAXPROCS=1\n")
	} else {
		p("- Placement: not pinned; every process may use every CPU (default GOMAXPROCS)\n")
	}
	p("- Load: %d keep-alive HTTP/1.1 connections, %s warm-up then %s measured per run; random known session IDs, half QUIC half HTTP\n",
		o.conns, o.warmup, o.duration)
	reqLevel := o.requestLevel
	if reqLevel == "" {
		reqLevel = "info (the default)"
	}
	p("- Daemon: default configuration but for the fake EC2 endpoint, poll-interval %s, a larger on-miss budget (to warm the negative cache); log.request-level %s, log to a file\n",
		o.loadPoll, reqLevel)
	p("- Fleet: synthetic; every tenth instance serves 3 session IDs, so sessions = 1.2 x instances\n")
	p("- Whole run: %s; the machine was %.0f%% busy in the second before it started\n\n", took.Round(time.Second), o.busyBefore*100)

	renderGoals(p, o, results)

	p("## Resolve throughput and latency (loopback)\n\n")
	p("Closed loop: every connection sends its next request as soon as the answer is in, so this is the saturation throughput; ")
	p("latency then is mostly queueing (%d requests in flight). Medians of %d rounds; each round runs every server back to back (odd rounds in reverse order), ", o.conns, o.rounds)
	p("and x ceiling is the median of the rounds' ratios. Latency percentiles are over all rounds.\n\n")
	p("| instances | run | req/s | x ceiling | p50 | p99 | p99.9 | max | bad answers | server / generator CPU | others' CPU |\n")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		row := func(name string, runs, ceiling []*loadResult) {
			if len(runs) == 0 {
				return
			}
			ratio := "-"
			if ceiling != nil {
				ratio = fmt.Sprintf("%.2f", medianRatio(ceiling, runs))
			}
			h := mergedHist(runs)
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", count(r.n), name, count(int(medianRPS(runs))), ratio,
				dms(h.quantile(0.5)), dms(h.quantile(0.99)), dms(h.quantile(0.999)), dms(time.Duration(h.max)), bad(runs), cpus(runs), others(runs))
		}
		row("ceiling (constant body)", r.ceiling, nil)
		row("resolver, known IDs", r.hit, r.ceiling)
		row("resolver, known IDs, request-level off", r.hitNoLog, r.ceiling)
		row(fmt.Sprintf("resolver, %.0f%% unknown IDs", o.unknown*100), r.unknown, r.ceiling)
		row("ceiling, TLS", r.ceilingTLS, nil)
		row("resolver, known IDs, TLS", r.hitTLS, r.ceilingTLS)
	}
	p("\nbad answers: connection errors, and answers other than 200 for known and 404 for unknown IDs. ")
	p("server / generator CPU: median share of one CPU each used in the measured windows; the one near 100%% is the bottleneck. ")
	p("others' CPU: the largest share of the machine's CPU that processes outside the benchmark used during one of the row's runs; ")
	p("above a few percent, they competed with the server or the generator and the row is skewed.\n")
	for _, r := range results {
		if r.callsDuringLoad > 0 {
			p("\nNote (%s instances): %d DescribeInstances calls (a poll?) landed in the load runs.\n", count(r.n), r.callsDuringLoad)
		}
	}
	if o.rate > 0 {
		p("\n### Latency below saturation\n\n")
		p("Paced (open loop) at %s requests/s over the same %d connections, known IDs, in the same rounds; latency counts from when each ", count(int(o.rate)), o.conns)
		p("request was due, so stalls are charged to every request they delay. Percentiles over all rounds.\n\n")
		p("| instances | server | req/s | p50 | p99 | p99.9 | max | bad answers | others' CPU |\n")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range results {
			for _, x := range []struct {
				name string
				runs []*loadResult
			}{{"ceiling", r.pacedCeiling}, {"resolver", r.pacedHit}} {
				h := mergedHist(x.runs)
				p("| %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", count(r.n), x.name, count(int(medianRPS(x.runs))),
					dms(h.quantile(0.5)), dms(h.quantile(0.99)), dms(h.quantile(0.999)), dms(time.Duration(h.max)), bad(x.runs), others(x.runs))
			}
		}
	}

	p("\n## Poll cost\n\n")
	p("One full refresh of the region, measured in the harness process with the daemon's code (SDK client from ec2.LoadAWSConfig, ")
	p("ec2.Source.Poll, resolve.Index.Publish); the fake EC2 endpoint runs in another process and answers each page after 2 ms. ")
	p("CPU is the process's, GC included. *SDK alone* pages and decodes without converting; *conversion* is Source.Poll over those ")
	p("pages replayed from memory; the index build beyond the SDK is conversion + Publish. Index heap: live heap with the published index ")
	p("minus without it, per session.\n\n")
	p("| instances | sessions | DescribeInstances calls | Source.Poll: wall / CPU | SDK alone: wall / CPU | conversion: wall / CPU | Publish: wall / CPU | build CPU beyond SDK | index heap per session |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		pr := r.poll
		p("| %s | %s | %d (want %d) | %s / %s | %s / %s | %s / %s | %s / %s | %s | %.0f B |\n", count(r.n), count(pr.Sessions), pr.Calls, pr.WantCalls,
			dur(pr.PollWall), dur(pr.PollCPU), dur(pr.SDKWall), dur(pr.SDKCPU), dur(pr.ConvertWall), dur(pr.ConvertCPU),
			dur(pr.PublishWall), dur(pr.PublishCPU), dur(pr.BuildCPU()), pr.BytesPerSession())
	}
	p("\nThe daemon process (default configuration), from /proc: CPU from start to its first full poll landing (start-up and credential loading included), ")
	p("and resident memory once ready and after the load runs.\n\n")
	p("| instances | CPU to ready | RSS when ready | RSS after load | peak RSS (VmHWM) | negative-cache warm-up calls |\n")
	p("|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		p("| %s | %s | %s | %s | %s | %d |\n", count(r.n), dur(r.readyCPU),
			mib(r.rssReady), mib(r.rssAfter), mib(r.hwm), r.warmCalls)
	}
	if len(results) >= 2 {
		// From the second-largest size when there are three or more: at the smallest, fixed
		// costs and timer resolution blur sub-millisecond figures.
		a, z := results[0], results[len(results)-1]
		if len(results) >= 3 {
			a = results[len(results)-2]
		}
		f := float64(z.n) / float64(a.n)
		growth := func(x, y time.Duration) string {
			return fmt.Sprintf("%.2f", float64(y)/float64(max(x, time.Microsecond))/f)
		}
		p("\nGrowth from %s to %s instances, cost per instance at %s over cost per instance at %s (1.00 = linear): ",
			count(a.n), count(z.n), count(z.n), count(a.n))
		p("Source.Poll CPU %s, SDK CPU %s, conversion CPU %s, Publish CPU %s, index heap %.2f. ",
			growth(a.poll.PollCPU, z.poll.PollCPU), growth(a.poll.SDKCPU, z.poll.SDKCPU), growth(a.poll.ConvertCPU, z.poll.ConvertCPU),
			growth(a.poll.PublishCPU, z.poll.PublishCPU), float64(z.poll.Retained)/float64(a.poll.Retained)/f)
		p("The daemon's peak RSS grows by %.0f bytes per added session (%s MiB at %s instances, %s at %s).\n",
			float64(z.hwm-a.hwm)/float64(z.sessions-a.sessions), strings.TrimSuffix(mib(a.hwm), " MiB"), count(a.n), mib(z.hwm), count(z.n))
	}

	if results[0].fresh != nil {
		p("\n## Freshness\n\n")
		p("| instances | poll interval | tag appears -> first 200 | termination -> first 404 |\n")
		p("|---:|---:|---:|---:|\n")
		for _, r := range results {
			f := r.fresh
			p("| %s | %s | %s | %s |\n", count(r.n), f.PollInterval, durs(f.TagTo200), durs(f.TermTo404))
		}
		p("\nEach trial is listed. The first 200 comes from the on-miss lookup (one DescribeInstances filtered on the ID, which the fake ")
		p("answers by scanning every instance); the first 404 waits for the next full poll, so it is bounded by the poll interval ")
		p("(+10%% jitter) plus the poll's own duration.\n")
	}
	return b.String()
}

// durs lists durations.
func durs(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = dur(d)
	}
	return strings.Join(s, ", ")
}

// cpuModel is the CPU's model name from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// dms formats a latency in milliseconds.
func dms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func medianRPS(runs []*loadResult) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = r.RPS
	}
	return medianFloat(v)
}

// medianRatio is the median over rounds of runs[i]'s throughput over base[i]'s.
func medianRatio(base, runs []*loadResult) float64 {
	v := make([]float64, 0, len(runs))
	for i := range min(len(base), len(runs)) {
		v = append(v, runs[i].RPS/base[i].RPS)
	}
	return medianFloat(v)
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func mergedHist(runs []*loadResult) *histogram {
	h := &histogram{}
	for _, r := range runs {
		h.merge(r.histogram())
	}
	return h
}

// cpus is the median server and generator CPU use of runs.
func cpus(runs []*loadResult) string {
	s, g := make([]float64, len(runs)), make([]float64, len(runs))
	for i, r := range runs {
		s[i], g[i] = r.ServerCPU, r.GeneratorCPU
	}
	return fmt.Sprintf("%.0f%% / %.0f%%", medianFloat(s)*100, medianFloat(g)*100)
}

// others is the largest share of the machine's CPU that other processes used in one of runs.
func others(runs []*loadResult) string {
	var m float64
	for _, r := range runs {
		m = max(m, r.Others)
	}
	return fmt.Sprintf("%.0f%%", m*100)
}

func bad(runs []*loadResult) int64 {
	var n int64
	for _, r := range runs {
		n += r.Wrong + r.Errors
	}
	return n
}

func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// count formats n with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// renderGoals checks the goals against the results, one column per fleet size.
func renderGoals(p func(string, ...any), o *options, results []*sizeResult) {
	p("## Goals\n\n| goal |")
	for _, r := range results {
		p(" %s |", count(r.n))
	}
	p("\n|---|")
	for range results {
		p("---|")
	}
	p("\n")
	row := func(goal string, cell func(r *sizeResult) (string, bool)) {
		p("| %s |", goal)
		for _, r := range results {
			v, ok := cell(r)
			mark := "yes"
			if !ok {
				mark = "**no**"
			}
			p(" %s: %s |", mark, v)
		}
		p("\n")
	}
	ratio := func(runs, base []*loadResult) (string, bool) {
		x := medianRatio(base, runs)
		return fmt.Sprintf("%.2f", x), x >= 0.9
	}
	row("resolver >= 0.9 x ceiling, known IDs (default: a request line per request)", func(r *sizeResult) (string, bool) { return ratio(r.hit, r.ceiling) })
	row("resolver >= 0.9 x ceiling, known IDs, request-level off", func(r *sizeResult) (string, bool) { return ratio(r.hitNoLog, r.ceiling) })
	if o.tls {
		row("resolver >= 0.9 x ceiling, TLS (default)", func(r *sizeResult) (string, bool) { return ratio(r.hitTLS, r.ceilingTLS) })
	}
	row(fmt.Sprintf("p99 < 2 ms, %d connections saturated (ceiling's p99 in brackets)", o.conns), func(r *sizeResult) (string, bool) {
		q := mergedHist(r.hit).quantile(0.99)
		return fmt.Sprintf("%s (%s)", dms(q), dms(mergedHist(r.ceiling).quantile(0.99))), q < 2*time.Millisecond
	})
	if o.rate > 0 {
		row(fmt.Sprintf("p99 < 2 ms, paced at %s req/s (ceiling's p99 in brackets)", count(int(o.rate))), func(r *sizeResult) (string, bool) {
			q := mergedHist(r.pacedHit).quantile(0.99)
			return fmt.Sprintf("%s (%s)", dms(q), dms(mergedHist(r.pacedCeiling).quantile(0.99))), q < 2*time.Millisecond
		})
	}
	row("DescribeInstances calls per full refresh = ceil(N/1000)", func(r *sizeResult) (string, bool) {
		return fmt.Sprintf("%d", r.poll.Calls), r.poll.Calls == r.poll.WantCalls
	})
	row("index build CPU beyond the SDK < 1 s", func(r *sizeResult) (string, bool) { return dur(r.poll.BuildCPU()), r.poll.BuildCPU() < time.Second })
	row("index heap < 400 B per session", func(r *sizeResult) (string, bool) {
		return fmt.Sprintf("%.0f B", r.poll.BytesPerSession()), r.poll.BytesPerSession() < 400
	})
	row("daemon peak RSS < 150 MiB", func(r *sizeResult) (string, bool) { return mib(r.hwm), r.hwm < 150<<20 })
	p("\n")
}
