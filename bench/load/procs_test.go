package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWithGOMAXPROCS(t *testing.T) {
	env := []string{"PATH=/bin", "GOMAXPROCS=8", "HOME=/root"}
	if got := withGOMAXPROCS(env, 0); !slices.Equal(got, env) {
		t.Errorf("procs 0: %v; want the environment unchanged", got)
	}
	got := withGOMAXPROCS(env, 1)
	want := []string{"PATH=/bin", "HOME=/root", "GOMAXPROCS=1"}
	if !slices.Equal(got, want) {
		t.Errorf("procs 1: %v; want %v", got, want)
	}
	if !slices.Equal(env, []string{"PATH=/bin", "GOMAXPROCS=8", "HOME=/root"}) {
		t.Errorf("the caller's environment was modified: %v", env)
	}
}

func TestPreemptionsSumsThreads(t *testing.T) {
	proc := t.TempDir()
	write := func(tid, status string) {
		dir := filepath.Join(proc, "42", "task", tid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("42", "Name:\ttokend\nvoluntary_ctxt_switches:\t100\nnonvoluntary_ctxt_switches:\t5\n")
	write("43", "Name:\ttokend\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n")
	n, err := preemptionsIn(proc, 42)
	if err != nil || n != 7 {
		t.Errorf("preemptions = %d, %v; want 7 (5 + 2, the voluntary switches left out)", n, err)
	}
	if _, err := preemptionsIn(proc, 41); err == nil {
		t.Error("a process with no threads read without an error")
	}
	write("44", "nonvoluntary_ctxt_switches:\tmany\n")
	if _, err := preemptionsIn(proc, 42); err == nil {
		t.Error("a malformed count read without an error")
	}
	// This process, on the real /proc.
	if _, err := preemptions(os.Getpid()); err != nil {
		t.Errorf("preemptions of this process: %v", err)
	}
}
