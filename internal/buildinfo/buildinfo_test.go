package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bi      *debug.BuildInfo
		want    []string
		wantNot []string
	}{
		{name: "no build info", bi: nil,
			want: []string{"tokend unknown\n", "commit: unknown (built without version control information", "go: unknown\n"}},
		{name: "built with -buildvcs=false", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/tokend/tokend", Version: "(devel)"}},
			want: []string{"tokend (devel)\n", "commit: unknown (built without", "go: go1.26.8\n"}, wantNot: []string{"commit time"}},
		{name: "a clean checkout", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			want: []string{"tokend v1.4.0\n", "commit: 0123456789abcdef\n", "commit time: 2026-12-01T10:00:00Z\n"}, wantNot: []string{"modified", "unknown"}},
		{name: "uncommitted changes", bi: &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201100000-0123456789ab+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}},
			want: []string{"tokend v0.0.0-20261201100000-0123456789ab+dirty\n", "commit: 0123456789abcdef (modified: built with uncommitted changes)\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := From(tc.bi).String("tokend")
			for _, s := range tc.want {
				if !strings.Contains(got, s) {
					t.Errorf("lacks %q:\n%s", s, got)
				}
			}
			for _, s := range tc.wantNot {
				if strings.Contains(got, s) {
					t.Errorf("has %q:\n%s", s, got)
				}
			}
		})
	}
}

// TestRead reads the test binary's own build information: it has a Go
// version, and never an empty field.
func TestRead(t *testing.T) {
	i := Read()
	if i.Version == "" || i.Commit == "" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Errorf("Read() = %+v", i)
	}
}
