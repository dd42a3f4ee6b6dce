package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// roleEnv names the environment variable that makes this binary one of the harness's child
// processes (the ceiling server, the fake EC2 endpoint, the load generator) instead of the
// harness.
const roleEnv = "DCV_BENCH_ROLE"

// placement says where a child process runs: which CPUs (taskset -c, "" for any) and with what
// GOMAXPROCS (0 for the Go default).
type placement struct {
	cpus       string
	gomaxprocs int
}

// child is a process the harness started. Its standard input is a pipe the harness holds
// open: the harness's own children exit when it closes, so nothing outlives the harness.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	done  chan struct{}
	err   error
}

// command returns the command line that runs path with args at p.
func (p placement) command(path string, args ...string) *exec.Cmd {
	if p.cpus != "" {
		return exec.Command("taskset", append([]string{"-c", p.cpus, path}, args...)...)
	}
	return exec.Command(path, args...)
}

// startChild starts the program at path (taskset execs it, so the PID is the program's) with
// the extra environment env and stderr to the file logPath ("-": the harness's stderr).
func startChild(name, path string, args []string, env []string, p placement, logPath string) (*child, error) {
	cmd := p.command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	if p.gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(p.gomaxprocs))
	}
	if logPath == "-" {
		cmd.Stderr = os.Stderr
	} else if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own descriptor
		cmd.Stderr = f
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Not StdoutPipe: Wait closes that as soon as the process exits, possibly before its
	// output has been read. Wait waits for the copy into pw instead, which ends once read.
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, out: bufio.NewReader(pr), done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	return c, nil
}

// startRole starts this very binary as a child in role.
func startRole(role string, args []string, p placement) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startChild(role, self, args, []string{roleEnv + "=" + role}, p, "-")
}

// readLine returns the child's next line of standard output, waiting at most timeout.
func (c *child) readLine(timeout time.Duration) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := c.out.ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("%s: %w", c.name, r.err)
		}
		return r.line, nil
	case <-c.done:
		return "", fmt.Errorf("%s exited: %v", c.name, c.err)
	case <-time.After(timeout):
		return "", fmt.Errorf("%s: no output within %s", c.name, timeout)
	}
}

// stop asks the child to end (SIGTERM, and EOF on its stdin) and kills it after 10s.
func (c *child) stop() {
	if c == nil {
		return
	}
	_ = c.stdin.Close()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// exitWithParent ends this child process when the harness closes its standard input or dies.
func exitWithParent() {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
}

// memStatus returns VmRSS and VmHWM (peak RSS) of process pid, in bytes.
func memStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc status")
	}
	return rss, hwm, nil
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuTime returns the user and system CPU time process pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, nil
}

// selfCPU returns the CPU time (user and system) this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineTicks returns the machine's busy and total CPU time so far, from /proc/stat.
func machineTicks() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		total += time.Duration(v) * clockTick
		if i != 3 && i != 4 { // idle, iowait
			busy += time.Duration(v) * clockTick
		}
	}
	return busy, total
}

// machineBusy samples /proc/stat for d and returns the share of the machine's CPU time that
// was busy, for the report: the harness is only as steady as the machine is quiet.
func machineBusy(d time.Duration) float64 {
	b0, t0 := machineTicks()
	time.Sleep(d)
	b1, t1 := machineTicks()
	if t1 <= t0 {
		return 0
	}
	return float64(b1-b0) / float64(t1-t0)
}

// interference measures the CPU that processes other than the harness, the server under test
// and the load generator use meanwhile: other tenants of the machine, which skew a run.
type interference struct {
	busy0, total0     time.Duration
	server0, harness0 time.Duration
}

// startInterference starts measuring; server0 is the server's CPU time so far.
func startInterference(server0 time.Duration) *interference {
	in := &interference{server0: server0, harness0: selfCPU()}
	in.busy0, in.total0 = machineTicks()
	return in
}

// others returns the CPU others used since the start as a share of the whole machine's, given
// the server's CPU time so far and the load generator's CPU time.
func (in *interference) others(server, generator time.Duration) float64 {
	busy, total := machineTicks()
	if total <= in.total0 {
		return 0
	}
	o := (busy - in.busy0) - (server - in.server0) - (selfCPU() - in.harness0) - generator
	return max(float64(o)/float64(total-in.total0), 0)
}
