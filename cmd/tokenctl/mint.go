package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

func defineMint(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	identity := fs.String("identity", "", "`identity` of the token (default: tokend's default identity)")
	app := fs.String("application", "", "TwiML application `SID` (default: tokend's default or only application)")
	ttl := fs.Int("ttl", 0, "lifetime in `seconds`, 1 to 86400 (default 3600)")
	region := fs.String("region", "", "home `region` for the twr header, such as ie1")
	grants := fs.String("grants", "", `grants as `+"`JSON`"+`, such as '{"voice":{"incoming":{"allow":true}}}' (default: the application's)`)
	tokenOnly := fs.Bool("token-only", false, "print only the token")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("mint: unexpected argument %q", args[0])
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
		cl, err := client.New(c.addr)
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		resp, err := cl.Mint(ctx, req)
		if err != nil {
			st := status.Convert(err)
			return fmt.Errorf("mint: %s: %s", st.Code(), st.Message())
		}
		if c.json {
			return c.printJSON(resp)
		}
		stdout := c.stdout
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
}
