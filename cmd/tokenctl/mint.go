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
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// dialCaller returns a client of the token API that sends the caller
// credential, if one is given. It does not connect yet.
func (c *cli) dialCaller() (*client.Client, error) {
	cred, err := c.callerCredential()
	if err != nil {
		return nil, err
	}
	opts, err := c.clientOptions()
	if err != nil {
		return nil, err
	}
	if cred != "" {
		opts = append(opts, client.WithBearerToken(cred))
	}
	return client.New(c.addr, opts...)
}

func defineMint(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	identity := fs.String("identity", "", "`identity` of the token (default: tokend's default identity)")
	app := fs.String("application", "", "TwiML application `SID` (default: tokend's default or only application)")
	ttl := fs.Int("ttl", 0, "lifetime in `seconds`, 1 to 86400 (default 3600)")
	region := fs.String("region", "", "home `region` for the twr header, such as ie1")
	grants := fs.String("grants", "", `grants as `+"`JSON`"+`, such as '{"voice":{"incoming":{"allow":true}}}' (default: the application's)`)
	tokenOnly := fs.Bool("token-only", false, "print only the token")
	explain := fs.Bool("explain", false, "sign nothing: print whether the policy allows this mint (rule, principal), the token's size and the header and claims that would be signed")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			// Not quoted: it may be a token typed in the wrong place.
			return errors.New("mint: takes no arguments")
		}
		if *explain && *tokenOnly {
			return errors.New("mint: --explain and --token-only exclude each other")
		}
		req := &tokenv1.MintRequest{ApplicationSid: *app, Region: *region, ValidateOnly: *explain}
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
		cl, err := c.dialCaller()
		if err != nil {
			return fmt.Errorf("mint: %w", err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		resp, err := cl.Mint(ctx, req)
		if err != nil {
			return fmt.Errorf("mint: %w", c.rpcError(err))
		}
		if *explain {
			return c.printExplain(resp)
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

// printExplain prints the answer of a validate_only mint: the decision and
// what would be signed. A mint the policy denies is an error (tokend
// normally answers PermissionDenied instead).
func (c *cli) printExplain(resp *tokenv1.MintResponse) error {
	d := resp.GetDecision()
	if d == nil {
		return errors.New("mint --explain: tokend returned no decision (is it older than --explain?)")
	}
	err := c.output(resp, func(w io.Writer) {
		for _, row := range [][2]string{
			{"ALLOWED", yesNo(d.GetAllowed())},
			{"RULE", cell(d.GetRule())},
			{"PRINCIPAL", cell(d.GetPrincipal())},
			{"TOKEN SIZE", fmt.Sprintf("%d bytes", d.GetTokenSize())},
			{"IDENTITY", cell(resp.GetIdentity())},
			{"APPLICATION", cell(resp.GetApplicationSid())},
			{"API KEY", cell(resp.GetApiKeySid())},
			{"REGION", cell(resp.GetRegion())},
			{"EXPIRES", expiry(resp.GetExpiresAt(), time.Now())},
		} {
			fmt.Fprintf(w, "%s\t%s\n", row[0], row[1])
		}
		printStructs(w, d.GetHeader(), d.GetClaims())
	})
	if err == nil && !d.GetAllowed() {
		err = fmt.Errorf("mint --explain: the policy denies this mint (rule %s)", cell(d.GetRule()))
	}
	return err
}

// printStructs prints a token's decoded header and claims as indented
// JSON, keys sorted.
func printStructs(w io.Writer, header, claims *structpb.Struct) {
	for _, part := range []struct {
		title string
		s     *structpb.Struct
	}{{"header", header}, {"claims", claims}} {
		if part.s == nil {
			fmt.Fprintf(w, "\n%s: -\n", part.title)
			continue
		}
		b, err := json.MarshalIndent(part.s.AsMap(), "", "  ")
		if err != nil {
			fmt.Fprintf(w, "\n%s: ? (%v)\n", part.title, err)
			continue
		}
		fmt.Fprintf(w, "\n%s:\n%s\n", part.title, b)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// expiry prints a time and how far from now it is.
func expiry(t *timestamppb.Timestamp, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.AsTime().Sub(now).Round(time.Second)
	if d < 0 {
		return fmt.Sprintf("%s (expired %s ago)", timestamp(t), -d)
	}
	return fmt.Sprintf("%s (in %s)", timestamp(t), d)
}
