// Package client is a small Go client for tokend's gRPC API.
//
//	c, err := client.New("127.0.0.1:9090")
//	if err != nil { ... }
//	defer c.Close()
//	resp, err := c.Mint(ctx, &tokenv1.MintRequest{Identity: proto.String("alice")})
package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// Option configures a Client.
type Option func(*options)

type options struct {
	creds credentials.TransportCredentials
	dial  []grpc.DialOption
}

// WithTransportCredentials sets the transport security (TLS). Without it
// the connection is plaintext, as tokend listens on loopback by default.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithDialOptions adds gRPC dial options (interceptors, a custom dialer).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Client calls tokend. It is safe for concurrent use.
type Client struct {
	conn  *grpc.ClientConn
	token tokenv1.TokenServiceClient
}

// New returns a client for the tokend gRPC server at target (host:port or
// any gRPC target). It does not connect until the first call.
func New(target string, opts ...Option) (*Client, error) {
	o := &options{creds: insecure.NewCredentials()}
	for _, opt := range opts {
		opt(o)
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(o.creds)}, o.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("tokend client for %s: %w", target, err)
	}
	return &Client{conn: conn, token: tokenv1.NewTokenServiceClient(conn)}, nil
}

// Mint asks tokend for a token. Errors are gRPC status errors
// (status.Code(err) tells InvalidArgument, NotFound, ...).
func (c *Client) Mint(ctx context.Context, req *tokenv1.MintRequest, opts ...grpc.CallOption) (*tokenv1.MintResponse, error) {
	return c.token.Mint(ctx, req, opts...)
}

// Conn returns the underlying connection, for the other generated
// clients (health, admin).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
