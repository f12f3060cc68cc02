package client

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

const token = "admin-token-do-not-print-0123456789"

type fakeAdmin struct {
	tokenv1.UnimplementedAdminServiceServer
	auth chan []string
}

func (f *fakeAdmin) Rekey(ctx context.Context, _ *tokenv1.RekeyRequest) (*tokenv1.RekeyResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.auth <- md.Get("authorization")
	return &tokenv1.RekeyResponse{}, nil
}

func TestBearerTokenIsSent(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeAdmin{auth: make(chan []string, 1)}
	srv := grpc.NewServer()
	tokenv1.RegisterAdminServiceServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()

	c, err := New(lis.Addr().String(), WithBearerToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Admin().Rekey(context.Background(), &tokenv1.RekeyRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := <-fake.auth; len(got) != 1 || got[0] != "Bearer "+token {
		t.Errorf("authorization = %q, want [%q]", got, "Bearer "+token)
	}
}

func TestBearerTokenIsNeverPrinted(t *testing.T) {
	creds := &bearerToken{token: token}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		if s := fmt.Sprintf(verb, creds); strings.Contains(s, token) || strings.Contains(s, fmt.Sprintf("%x", token)) {
			t.Errorf("%s prints the token: %s", verb, s)
		}
	}
	if s := creds.String(); strings.Contains(s, token) {
		t.Errorf("String() = %q", s)
	}
	o := &options{}
	WithBearerToken(token)(o)
	if s := fmt.Sprintf("%+v %#v", o, o); strings.Contains(s, token) {
		t.Errorf("the options print the token: %s", s)
	}
}

func TestBadBearerToken(t *testing.T) {
	for _, tok := range []string{"", "line\nbreak" + token, token + "\x00", token + "é"} {
		_, err := New("127.0.0.1:1", WithBearerToken(tok))
		if err == nil {
			t.Errorf("New with token %q succeeded, want an error", tok)
			continue
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("the error quotes the token: %v", err)
		}
	}
}
