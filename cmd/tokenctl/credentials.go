package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// listFlag is a flag that may be given several times.
type listFlag []string

func (f *listFlag) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(*f, ",")
}

func (f *listFlag) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// nameArg returns the one positional argument, a credential name. Nothing
// here quotes it, nor a second argument: either may be a token typed in
// the wrong place; what looks like one is refused before it is sent.
func nameArg(cmd string, args []string) (string, error) {
	switch {
	case len(args) == 0 || args[0] == "":
		return "", fmt.Errorf("%s: missing the credential name", cmd)
	case len(args) > 1:
		return "", fmt.Errorf("%s: takes one argument, the credential name", cmd)
	case looksLikeToken(args[0]):
		return "", fmt.Errorf("%s: the argument looks like a token, not a credential name", cmd)
	}
	return args[0], nil
}

// looksLikeToken reports whether s looks like a tkd_… credential token
// ("tkd_" and 43 base64url characters) or a JWT.
func looksLikeToken(s string) bool {
	return strings.HasPrefix(s, "tkd_") && len(s) >= 4+43 ||
		strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

func defineCredentialsCreate(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	var groups listFlag
	fs.Var(&groups, "group", "a `group` the policy can select the caller by; repeat for several")
	return func(ctx context.Context, args []string) error {
		const cmd = "credentials create"
		name, err := nameArg(cmd, args)
		if err != nil {
			return err
		}
		for _, g := range groups {
			if looksLikeToken(g) {
				return fmt.Errorf("%s: a --group looks like a token, not a group", cmd)
			}
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.CreateCredentialResponse, error) {
			return a.CreateCredential(ctx, &tokenv1.CreateCredentialRequest{Name: name, Groups: groups})
		})
		if err != nil {
			return err
		}
		if resp.GetToken() == "" {
			return fmt.Errorf("%s: tokend returned no token", cmd)
		}
		if c.json {
			return c.printJSON(resp)
		}
		// The token alone on stdout, so that `> file` keeps just it; the
		// details on stderr.
		if _, err := fmt.Fprintln(c.stdout, resp.GetToken()); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stderr, 0, 8, 2, ' ', 0)
		credentialsTable(tw, resp.GetCredential())
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "\nThe token on stdout is the credential of %s. It is shown this once: tokend keeps only its hash.\n"+
			"Callers send it as \"authorization: Bearer <token>\" (tokenctl: --credential-file, TOKEND_CREDENTIAL_FILE or TOKEND_CREDENTIAL).\n",
			cell("credential:"+resp.GetCredential().GetName()))
		return nil
	}
}

func defineCredentialsList(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return errors.New("credentials list: takes no arguments")
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.ListCredentialsResponse, error) {
			return a.ListCredentials(ctx, &tokenv1.ListCredentialsRequest{})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { credentialsTable(w, resp.GetCredentials()...) })
	}
}

func defineCredentialsDelete(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		name, err := nameArg("credentials delete", args)
		if err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.DeleteCredentialResponse, error) {
			return a.DeleteCredential(ctx, &tokenv1.DeleteCredentialRequest{Name: name})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { fmt.Fprintf(w, "revoked credential %s\n", cell(name)) })
	}
}

func credentialsTable(w io.Writer, creds ...*tokenv1.Credential) {
	fmt.Fprintln(w, "NAME\tGROUPS\tCREATED")
	for _, cr := range creds {
		fmt.Fprintf(w, "%s\t%s\t%s\n", cell(cr.GetName()), cell(strings.Join(cr.GetGroups(), ",")), timestamp(cr.GetCreatedAt()))
	}
}
