// Package telemetry sets up OpenTelemetry tracing for tokend. Tracing is
// off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then spans are exported
// over OTLP/gRPC to that endpoint, configured by the standard OTEL_*
// variables (OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_INSECURE,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, ...).
//
// The exporter endpoint is only ever contacted when it is configured:
// with the variable unset, Setup installs nothing, opens no connection,
// and the instrumentation is not even added to the servers, so tracing
// costs nothing on the mint path.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// EndpointEnv is the variable that turns tracing on.
const EndpointEnv = "OTEL_EXPORTER_OTLP_ENDPOINT"

// Setup turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT is set (and
// OTEL_SDK_DISABLED is not "true"): it installs a global tracer provider
// that batches spans to an OTLP/gRPC exporter, and the W3C trace context
// and baggage propagators. serviceName is the service.name resource
// attribute unless OTEL_SERVICE_NAME overrides it.
//
// enabled reports whether tracing is on; the caller adds the otelgrpc and
// otelhttp instrumentation only then. shutdown flushes pending spans and
// stops the exporter; it is never nil (a no-op when tracing is off).
func Setup(ctx context.Context, serviceName string) (shutdown func(context.Context) error, enabled bool, err error) {
	noop := func(context.Context) error { return nil }
	if os.Getenv(EndpointEnv) == "" || strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return noop, false, nil
	}
	// Only here, with an endpoint configured, is an exporter created; its
	// connection is made lazily, to that endpoint only.
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return noop, false, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		exp.Shutdown(ctx)
		return noop, false, fmt.Errorf("otel resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, true, nil
}
