// Package client is a small Go client for tokend's gRPC API.
//
//	c, err := client.New("127.0.0.1:9090")
//	if err != nil { ... }
//	defer c.Close()
//	resp, err := c.Mint(ctx, &tokenv1.MintRequest{Identity: proto.String("alice")})
//
// The admin API needs the admin credential:
//
//	c, err := client.New("127.0.0.1:9090", client.WithBearerToken(token))
//	...
//	resp, err := c.Admin().ListApplications(ctx, &tokenv1.ListApplicationsRequest{})
package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// Option configures a Client.
type Option func(*options)

type options struct {
	creds  credentials.TransportCredentials
	dial   []grpc.DialOption
	bearer *bearerToken
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

// WithBearerToken attaches `authorization: Bearer <token>` to every call,
// as the admin API requires. The token is sent whether or not the
// connection uses TLS (tokend may run plaintext on loopback): without
// WithTransportCredentials it travels in the clear, so use TLS for any
// address that is not local. The token never appears in an error or in
// the String or GoString of anything this package returns. New fails if
// the token is empty or holds characters a header cannot carry
// (anything but printable ASCII).
func WithBearerToken(token string) Option {
	return func(o *options) { o.bearer = &bearerToken{token: token} }
}

// bearerToken is a credentials.PerRPCCredentials that sends a bearer
// token. Every way of printing it redacts the token.
type bearerToken struct {
	token string
}

var _ credentials.PerRPCCredentials = (*bearerToken)(nil)

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b *bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: false,
// so that the token can go to a plaintext tokend on loopback.
func (*bearerToken) RequireTransportSecurity() bool { return false }

const redacted = "Bearer [REDACTED]"

func (*bearerToken) String() string   { return redacted }
func (*bearerToken) GoString() string { return redacted }

// Format redacts the token for every verb, %d and %x included.
func (*bearerToken) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// validate reports what is wrong with the token, without quoting it.
func (b *bearerToken) validate() error {
	if b.token == "" {
		return errors.New("empty bearer token")
	}
	for i := 0; i < len(b.token); i++ {
		if c := b.token[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("bearer token: byte %d is not printable ASCII", i)
		}
	}
	return nil
}

// Client calls tokend. It is safe for concurrent use.
type Client struct {
	conn  *grpc.ClientConn
	token tokenv1.TokenServiceClient
	admin tokenv1.AdminServiceClient
}

// New returns a client for the tokend gRPC server at target (host:port or
// any gRPC target). It does not connect until the first call.
func New(target string, opts ...Option) (*Client, error) {
	o := &options{creds: insecure.NewCredentials()}
	for _, opt := range opts {
		opt(o)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(o.creds)}
	if o.bearer != nil {
		if err := o.bearer.validate(); err != nil {
			return nil, fmt.Errorf("tokend client for %s: %w", target, err)
		}
		dial = append(dial, grpc.WithPerRPCCredentials(o.bearer))
	}
	dial = append(dial, o.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("tokend client for %s: %w", target, err)
	}
	return &Client{
		conn:  conn,
		token: tokenv1.NewTokenServiceClient(conn),
		admin: tokenv1.NewAdminServiceClient(conn),
	}, nil
}

// Mint asks tokend for a token. Errors are gRPC status errors
// (status.Code(err) tells InvalidArgument, NotFound, ...).
func (c *Client) Mint(ctx context.Context, req *tokenv1.MintRequest, opts ...grpc.CallOption) (*tokenv1.MintResponse, error) {
	return c.token.Mint(ctx, req, opts...)
}

// Admin returns the client of the admin API (applications and API keys).
// Its calls need the admin credential: create the Client with
// WithBearerToken. Errors are gRPC status errors.
func (c *Client) Admin() tokenv1.AdminServiceClient { return c.admin }

// Conn returns the underlying connection, for the other generated
// clients (health).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
