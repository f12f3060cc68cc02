// Command tokenctl talks to tokend: `tokenctl mint` prints a token with its
// decoded header and claims (or, with --explain, the policy decision and
// what would be signed); `tokenctl verify` says whether Twilio would accept
// a token, and why not; `tokenctl apps`, `tokenctl keys`,
// `tokenctl credentials` and `tokenctl rekey` manage applications, their
// API keys and the callers' credentials through the admin API;
// `tokenctl audit find` finds a token's record in tokend's audit files.
// `tokenctl -h` lists every command and flag. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokend/tokend/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokenctl:", err)
		}
		os.Exit(1)
	}
}

// cli is one invocation: the global flags and the process's environment.
type cli struct {
	addr           string
	timeout        time.Duration
	json           bool
	adminTokenFile string
	credentialFile string
	tls            tlsFlags

	// redact holds the bearer tokens loaded so far (the admin token, the
	// caller credential): no error tokenctl prints carries them.
	redact []string

	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is a tokenctl command.
type command struct {
	name  string // "apps update"
	args  string // the synopsis of its positional arguments and required flags
	brief string
	// define declares the command's flags on fs and returns what runs the
	// command once they are parsed, with the positional arguments left.
	define func(c *cli, fs *flag.FlagSet) func(ctx context.Context, args []string) error
}

// groups are the commands that take a subcommand.
var groups = map[string]string{
	"apps":        "create, list, show, update, delete, default, twilio-credential",
	"keys":        "add, list, activate, delete, provision, revoke, reconcile",
	"credentials": "create, list, delete",
	"audit":       "find",
}

func commands() []command {
	return []command{
		{"mint", "", "mint a token and print it with its decoded header and claims; with --explain, print the policy decision and what would be signed instead", defineMint},
		{"verify", "[TOKEN]", "say whether Twilio would accept a token (else its error code and why), and print its key, application, expiry and decoded header and claims; the token is read from stdin when not given, which is better: it is a bearer credential", defineVerify},
		{"apps create", "--application AP.. --account AC..", "add a TwiML application", defineAppsCreate},
		{"apps list", "", "list the applications", defineAppsList},
		{"apps show", "AP..", "show one application", defineAppsShow},
		{"apps update", "AP..", "change the fields given; the others keep their value", defineAppsUpdate},
		{"apps delete", "AP..", "delete an application and its keys", defineAppsDelete},
		{"apps default", "[AP..]", "show the default application (of mint requests naming none), or set it", defineAppsDefault},
		{"keys add", "--application AP.. --key SK..", "add an API key; its secret is read from --secret-file or stdin (a prompt on a terminal), never from the command line", defineKeysAdd},
		{"keys list", "--application AP..", "list the keys of an application", defineKeysList},
		{"keys activate", "--application AP.. --key SK..", "make a key the application's only active key", defineKeysActivate},
		{"keys delete", "--application AP.. --key SK..", "delete a retired key", defineKeysDelete},
		{"apps twilio-credential", "--application AP..", "set the provisioning credential tokend manages the application's keys at Twilio with: the account's auth token, or a Main API key (--api-key); the secret is read from --secret-file or stdin, never from the command line; --delete removes it", defineAppsTwilioCredential},
		{"keys provision", "--application AP..", "create a new API key at Twilio for the application (its secret never leaves tokend), activated with --activate", defineKeysProvision},
		{"keys revoke", "--application AP.. --key SK..", "replace a compromised key: a fresh key is provisioned and activated, then the key is deleted at Twilio at once", defineKeysRevoke},
		{"keys reconcile", "--application AP..", "compare the application's keys with Twilio's: keys tokend created but no longer knows (--delete-orphans deletes them), keys Twilio no longer has", defineKeysReconcile},
		{"credentials create", "NAME", "issue a caller credential; its token is printed once, alone on stdout (the details go to stderr), and cannot be shown again", defineCredentialsCreate},
		{"credentials list", "", "list the caller credentials (names and groups, never tokens)", defineCredentialsList},
		{"credentials delete", "NAME", "revoke a caller credential at once", defineCredentialsDelete},
		{"rekey", "", "re-encrypt every secret under the primary master key", defineRekey},
		{"audit find", "--jti JTI|TOKEN|- [FILE...]", "find who minted a token, when, for which identity and application, from which address, in tokend's audit files (rotated ones included, gzip or not; or the FILEs given); reads the files, does not call tokend", defineAuditFind},
		{"version", "", "print tokenctl's version and the commit it was built from (calls nothing)", defineVersion},
	}
}

func defineVersion(c *cli, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("version: unexpected argument %q", args[0])
		}
		_, err := io.WriteString(c.stdout, buildinfo.Read().String("tokenctl"))
		return err
	}
}

func globalFlags(c *cli) *flag.FlagSet {
	fs := flag.NewFlagSet("tokenctl", flag.ContinueOnError)
	addr := c.getenv("TOKEND_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9090"
	}
	fs.StringVar(&c.addr, "addr", addr, "tokend's gRPC address, as `host:port` (env TOKEND_ADDR)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "time limit of the call")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", "",
		"read the admin token from the file at `path` (else env TOKEND_ADMIN_TOKEN holds the token itself, or env TOKEND_ADMIN_TOKEN_FILE names its file)")
	fs.StringVar(&c.credentialFile, "credential-file", "",
		"read the caller credential that mint and verify send (a tkd_… token or an OIDC JWT) from the file at `path` (else env TOKEND_CREDENTIAL holds it, or env TOKEND_CREDENTIAL_FILE names its file; with none they call anonymously)")
	fs.BoolVar(&c.tls.enabled, "tls", tlsEnv(c.getenv), "connect over TLS, verifying tokend's certificate against the system's CAs or --ca-file (env TOKENCTL_TLS=true); implied by the three file flags below")
	fs.StringVar(&c.tls.caFile, "ca-file", c.getenv("TOKENCTL_CA_FILE"), "verify tokend's certificate against the PEM CA certificates in the file at `path` (env TOKENCTL_CA_FILE)")
	fs.StringVar(&c.tls.certFile, "cert-file", c.getenv("TOKENCTL_CERT_FILE"), "present the PEM client certificate in the file at `path`, for tokend's mutual TLS (with --key-file; env TOKENCTL_CERT_FILE)")
	fs.StringVar(&c.tls.keyFile, "key-file", c.getenv("TOKENCTL_KEY_FILE"), "the PEM private key of --cert-file, from the file at `path` (env TOKENCTL_KEY_FILE)")
	fs.StringVar(&c.tls.serverName, "server-name", c.getenv("TOKENCTL_SERVER_NAME"), "expect this `name` in tokend's certificate instead of the host of --addr (env TOKENCTL_SERVER_NAME)")
	fs.BoolVar(&c.json, "json", false, "print the response as JSON (protojson) instead of a table; may also follow the command")
	return fs
}

const usageFooter = `
The admin commands (apps, keys, credentials, rekey) send the admin token as
"authorization: Bearer <token>". mint and verify send the caller credential
the same way when there is one: from --credential-file, else env
TOKEND_CREDENTIAL (the token itself), else the file env
TOKEND_CREDENTIAL_FILE names; tokend in policy mode requires it. Neither
token is ever taken as a flag value, nor printed.

verify reads the token from stdin (a hidden prompt on a terminal) when no
argument is given. Prefer that: an access token is a bearer credential for
Twilio, and a command line ends up in shell history and process listings.
verify exits with status 1 when the token is not valid.

tokenctl connects without TLS unless --tls (or --ca-file, --cert-file,
--key-file) is given: without it, keep --addr on loopback. When a call
cannot connect, tokenctl says what the address answers (TLS, plain gRPC,
plain HTTP/1 or nothing) and which flag to change. Global flags go before
the command; a command's flags may come before or after its
arguments.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := globalFlags(c)
	fs.SetOutput(stderr)
	fs.Usage = func() { writeUsage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	cmd, rest, err := lookup(fs.Args())
	if err != nil {
		fs.Usage()
		return err
	}
	cfs := flag.NewFlagSet("tokenctl "+cmd.name, flag.ContinueOnError)
	cfs.SetOutput(stderr)
	cfs.Usage = func() { writeCommandUsage(stderr, cmd) }
	exec := cmd.define(c, cfs)
	cfs.BoolVar(&c.json, "json", c.json, "print the response as JSON")
	pos, err := parseInterspersed(cfs, rest)
	if err != nil {
		return err
	}
	return exec(ctx, pos)
}

// lookup finds the command that args start with.
func lookup(args []string) (command, []string, error) {
	name, rest := args[0], args[1:]
	if subs, ok := groups[name]; ok {
		if len(rest) == 0 {
			return command{}, nil, fmt.Errorf("%s needs a subcommand: %s", name, subs)
		}
		name, rest = name+" "+rest[0], rest[1:]
	}
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, rest, nil
		}
	}
	return command{}, nil, fmt.Errorf("unknown command %q", name)
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments, which it returns. After "--" everything is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func writeUsage(w io.Writer, global *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, "usage: tokenctl [global flags] <command> [arguments] [flags]\n\nglobal flags:\n")
	writeFlags(tw, global, "  ")
	fmt.Fprint(tw, "\ncommands:\n")
	for _, cmd := range commands() {
		fmt.Fprintf(tw, "\n  %s\n      %s\n", synopsis(cmd), cmd.brief)
		writeFlags(tw, cmdFlags(cmd), "      ")
	}
	tw.Flush()
	fmt.Fprint(w, usageFooter)
}

func writeCommandUsage(w io.Writer, cmd command) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "usage: tokenctl [global flags] %s [flags]\n\n%s\n\nflags:\n", synopsis(cmd), cmd.brief)
	writeFlags(tw, cmdFlags(cmd), "  ")
	fmt.Fprintf(tw, "  --json\tprint the response as JSON\n")
	tw.Flush()
	fmt.Fprint(w, "\nRun tokenctl -h for the global flags.\n")
}

func synopsis(cmd command) string {
	return strings.TrimSpace(cmd.name + " " + cmd.args)
}

// cmdFlags returns the flags a command declares.
func cmdFlags(cmd command) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.define(&cli{getenv: func(string) string { return "" }}, fs)
	return fs
}

func writeFlags(w io.Writer, fs *flag.FlagSet, indent string) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, help := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if arg != "" {
			name += " " + arg
		}
		if def := f.DefValue; def != "" && def != "0" && def != "false" {
			help += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "%s%s\t%s\n", indent, name, help)
	})
}
