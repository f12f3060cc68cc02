package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokend/tokend/server/telemetry"
)

func TestSetupOffWithoutEndpoint(t *testing.T) {
	t.Setenv(telemetry.EndpointEnv, "")
	shutdown, enabled, err := telemetry.Setup(context.Background(), "tokend-test")
	if err != nil {
		t.Fatalf("Setup() error = %v", err)
	}
	if enabled {
		t.Fatal("Setup() enabled = true with OTEL_EXPORTER_OTLP_ENDPOINT unset, want false")
	}
	if shutdown == nil {
		t.Fatal("Setup() shutdown = nil, want a no-op")
	}
	if err := shutdown(context.Background()); err != nil {
		t.Errorf("shutdown() = %v", err)
	}
}

func TestSetupOnWithEndpoint(t *testing.T) {
	// Nothing listens there; no span is made, so nothing is sent.
	t.Setenv(telemetry.EndpointEnv, "http://127.0.0.1:1")
	t.Setenv("OTEL_SDK_DISABLED", "")
	shutdown, enabled, err := telemetry.Setup(context.Background(), "tokend-test")
	if err != nil {
		t.Fatalf("Setup() error = %v", err)
	}
	if !enabled {
		t.Fatal("Setup() enabled = false with an endpoint set, want true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown() = %v", err)
	}
}
