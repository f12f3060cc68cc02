package main

import (
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
