// Command tokenctl talks to tokend: `tokenctl mint` prints a token with its
// decoded header and claims. See README.md.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

const usage = `usage: tokenctl [--addr host:port] <command> [flags]

commands:
  mint    mint a token and print it with its decoded header and claims

The address defaults to $TOKEND_ADDR or 127.0.0.1:9090.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokenctl:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	addr := getenv("TOKEND_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9090"
	}
	fs.StringVar(&addr, "addr", addr, "tokend gRPC address (env TOKEND_ADDR)")
	timeout := fs.Duration("timeout", 10*time.Second, "time limit of the call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch cmd, rest := fs.Arg(0), fs.Args()[1:]; cmd {
	case "mint":
		return mint(ctx, addr, rest, stdout, stderr)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func mint(ctx context.Context, addr string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenctl mint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	identity := fs.String("identity", "", "identity of the token (default: tokend's default identity)")
	app := fs.String("application", "", "TwiML application SID (default: tokend's default or only application)")
	ttl := fs.Int("ttl", 0, "lifetime in seconds, 1 to 86400 (default 3600)")
	region := fs.String("region", "", "home region for the twr header, such as ie1")
	grants := fs.String("grants", "", `grants as JSON, such as '{"voice":{"incoming":{"allow":true}}}' (default: the application's)`)
	tokenOnly := fs.Bool("token-only", false, "print only the token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mint: unexpected argument %q", fs.Arg(0))
	}
	req := &tokenv1.MintRequest{ApplicationSid: *app, Region: *region}
	if *identity != "" {
		req.Identity = proto.String(*identity)
	}
	if *ttl != 0 {
		req.TtlSeconds = proto.Int32(int32(*ttl))
	}
	if *grants != "" {
		req.Grants = &tokenv1.Grants{}
		if err := protojson.Unmarshal([]byte(*grants), req.Grants); err != nil {
			return fmt.Errorf("--grants: %v", err)
		}
	}
	c, err := client.New(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Mint(ctx, req)
	if err != nil {
		st := status.Convert(err)
		return fmt.Errorf("mint: %s: %s", st.Code(), st.Message())
	}
	fmt.Fprintln(stdout, resp.GetToken())
	if *tokenOnly {
		return nil
	}
	parts := strings.Split(resp.GetToken(), ".")
	if len(parts) != 3 {
		return fmt.Errorf("tokend returned a token of %d parts", len(parts))
	}
	for i, title := range []string{"header", "claims"} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return fmt.Errorf("decode %s: %v", title, err)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, raw, "", "  "); err != nil {
			return fmt.Errorf("decode %s: %v", title, err)
		}
		fmt.Fprintf(stdout, "\n%s:\n%s\n", title, pretty.String())
	}
	fmt.Fprintf(stdout, "\nexpires: %s (in %s)\n", resp.GetExpiresAt().AsTime().Local().Format(time.RFC3339),
		time.Until(resp.GetExpiresAt().AsTime()).Round(time.Second))
	return nil
}
