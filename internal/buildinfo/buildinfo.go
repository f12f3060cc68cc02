// Package buildinfo describes the running binary from the build
// information the Go toolchain embeds in it: the module version and the
// version-control commit it was built from.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Unknown stands for what the build information does not say: a binary
// built with -buildvcs=false (as CI does), outside a checkout, or without
// module support carries no commit.
const Unknown = "unknown"

// Info is what a binary says about its build.
type Info struct {
	Version   string // the main module's version: v1.2.3, v0.0.0-…+dirty, (devel) or unknown
	Commit    string // vcs.revision, or unknown
	Time      string // vcs.time (RFC 3339), or ""
	Modified  bool   // vcs.modified: built from a tree with uncommitted changes
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return From(nil)
	}
	return From(bi)
}

// From extracts an Info from build information; nil gives an Info of
// unknowns.
func From(bi *debug.BuildInfo) Info {
	info := Info{Version: Unknown, Commit: Unknown, GoVersion: Unknown}
	if bi == nil {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Commit = s.Value
			}
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the text of `tokend version` and `tokenctl version` for the
// program prog: its version on the first line, then the commit and the Go
// version.
func (i Info) String(prog string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", prog, i.Version)
	commit := i.Commit
	switch {
	case commit == Unknown:
		commit += " (built without version control information, e.g. with -buildvcs=false)"
	case i.Modified:
		commit += " (modified: built with uncommitted changes)"
	}
	fmt.Fprintf(&b, "commit: %s\n", commit)
	if i.Time != "" {
		fmt.Fprintf(&b, "commit time: %s\n", i.Time)
	}
	fmt.Fprintf(&b, "go: %s\n", i.GoVersion)
	return b.String()
}
