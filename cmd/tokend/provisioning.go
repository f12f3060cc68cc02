package main

import (
	"fmt"
	"time"
)

// envDuration reads a duration from the environment (Go syntax: 90s, 5m,
// 1h); def when unset.
func envDuration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration such as 90s, 5m or 1h", name, v)
	}
	return d, nil
}
