package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux (it is part of the user-space ABI, whatever CONFIG_HZ).
const clockTicks = 100

// cpuTime is a process's user plus system CPU time so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'. utime and stime are fields 14 and
	// 15, so the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// usage is what a server process has used so far: its CPU time and its
// threads' preemptions.
type usage struct {
	cpu     time.Duration
	preempt uint64
}

func serverUsage(pid int) (usage, error) {
	cpu, err := cpuTime(pid)
	if err != nil {
		return usage{}, err
	}
	n, err := preemptions(pid)
	if err != nil {
		return usage{}, err
	}
	return usage{cpu, n}, nil
}

// preemptions counts the times a process's threads were switched out
// while they could still run (nonvoluntary_ctxt_switches in
// /proc/<pid>/task/*/status, summed over the threads there now): the
// kernel gave their CPU to another task, the load generator on a shared
// machine. Each costs the process a switch and cold caches after it.
func preemptions(pid int) (uint64, error) { return preemptionsIn("/proc", pid) }

func preemptionsIn(proc string, pid int) (uint64, error) {
	statuses, err := filepath.Glob(filepath.Join(proc, strconv.Itoa(pid), "task", "*", "status"))
	if err != nil || len(statuses) == 0 {
		return 0, fmt.Errorf("%s/%d/task: no threads (%v)", proc, pid, err)
	}
	var n uint64
	for _, path := range statuses {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread has exited
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s: %w", path, err)
				}
				n += v
			}
		}
	}
	return n, nil
}

// machineBusy is the CPU time all the machine's CPUs have spent busy
// (user, nice, system, irq, softirq, steal; not idle or iowait) since boot,
// from /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// memKB reads fields of /proc/<pid>/status given in kB (VmHWM, VmRSS).
func memKB(pid int, names ...string) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	found := 0
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for i, n := range names {
			if name == n {
				v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("/proc/%d/status %s: %w", pid, n, err)
				}
				out[i] = v
				found++
			}
		}
	}
	if found != len(names) {
		return nil, fmt.Errorf("/proc/%d/status: missing one of %v", pid, names)
	}
	return out, nil
}

// selfCPU is the load generator's own CPU time (user plus system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// child is a server process the harness started.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // closed to stop a ceiling
	stderr *tailBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done is closed
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// start runs cmd as a child named name, its standard error kept (the last
// 64 KiB of it). The child gets SIGKILL if the harness dies.
func start(name string, cmd *exec.Cmd) (*child, error) {
	c := &child{name: name, cmd: cmd, stderr: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop asks the child to exit (closes its stdin and sends SIGTERM), and
// kills it if it has not within grace.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	c.stdin.Close()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// startCeiling re-executes this binary as a ceiling server and returns it
// with the address it listens on; procs > 0 sets its GOMAXPROCS.
func startCeiling(name, flagName string, procs int) (*child, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(exe, "-"+flagName)
	cmd.Env = withGOMAXPROCS(os.Environ(), procs)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	c, err := start(name, cmd)
	if err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(strings.TrimPrefix(line, "listening "))
		io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		if a == "" {
			c.stop(time.Second)
			return nil, "", fmt.Errorf("%s did not start: %v\n%s", name, c.err, c.stderr)
		}
		return c, a, nil
	case <-time.After(15 * time.Second):
		c.stop(time.Second)
		return nil, "", fmt.Errorf("%s did not announce its address within 15 s\n%s", name, c.stderr)
	}
}

// tailBuffer keeps the last max bytes written to it, and counts lines.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	lines int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines += bytes.Count(p, []byte("\n"))
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func (t *tailBuffer) Lines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines
}

// withGOMAXPROCS returns env with GOMAXPROCS set to procs, or env as it is
// for procs 0 (the server's Go default, or the caller's GOMAXPROCS).
func withGOMAXPROCS(env []string, procs int) []string {
	if procs <= 0 {
		return env
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return append(out, "GOMAXPROCS="+strconv.Itoa(procs))
}

// toolRun is what a load generator run by runTool printed, and the CPU
// time it used.
type toolRun struct {
	out, stderr []byte
	cpu         time.Duration
}

// with returns err with what the tool printed (its output cut to 2,000
// bytes), for an error about the run.
func (r toolRun) with(err error) error {
	return fmt.Errorf("%w\n%.2000s%s", err, r.out, r.stderr)
}

// runTool runs a load generator, bin with args, to its end. An error
// names the tool (name) and carries what it printed.
func runTool(ctx context.Context, name, bin string, args ...string) (toolRun, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := toolRun{out: out.Bytes(), stderr: errb.Bytes()}
	if err != nil {
		return r, r.with(fmt.Errorf("%s: %w", name, err))
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}
