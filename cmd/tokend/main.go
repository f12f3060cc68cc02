// Command tokend mints Twilio access tokens over gRPC and REST from API
// keys it keeps per TwiML application. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/httpapi"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/tokenapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokend:", err)
		}
		os.Exit(2)
	}
}

// options are tokend's settings: each flag has an environment variable of
// the same meaning (TOKEND_ and the flag's name in capitals) and a config
// file key (the flag's name with underscores). A flag given on the command
// line wins over the environment, which wins over the config file, which
// wins over the default (see layer in config.go).
type options struct {
	configFile, configSrc         string
	settings                      []setting // every option but --config, by flag name
	grpcAddr, httpAddr, dataDir   string
	store                         string
	masterKeyFile, adminTokenFile string
	defaultIdentity, defaultApp   string
	logLevel, logFormat           string
	maxBodyBytes                  int
	corsOriginsRaw                string
	corsOrigins                   []string // parsed from corsOriginsRaw
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	o := &options{}
	fs := flag.NewFlagSet("tokend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configFile, configFlag, env("TOKEND_CONFIG", ""), "YAML file of options, keys named like the flags with underscores (grpc_addr); flags and env win over it (env TOKEND_CONFIG)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", env("TOKEND_GRPC_ADDR", "127.0.0.1:9090"), "gRPC listen address (env TOKEND_GRPC_ADDR)")
	fs.StringVar(&o.httpAddr, "http-addr", env("TOKEND_HTTP_ADDR", "127.0.0.1:8080"), "REST listen address (env TOKEND_HTTP_ADDR)")
	fs.StringVar(&o.dataDir, "data-dir", env("TOKEND_DATA_DIR", "./data"), "directory of the embedded store and generated master key (env TOKEND_DATA_DIR)")
	fs.StringVar(&o.store, "store", env("TOKEND_STORE", ""), "store: empty for SQLite in the data dir, or a postgres:// URL shared by replicas (env TOKEND_STORE)")
	fs.StringVar(&o.masterKeyFile, "master-key-file", env("TOKEND_MASTER_KEY_FILE", ""), "file holding the master keyring; TOKEND_MASTER_KEY (env only) wins over it (env TOKEND_MASTER_KEY_FILE)")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", env("TOKEND_ADMIN_TOKEN_FILE", ""), "file holding the admin API bearer token; TOKEND_ADMIN_TOKEN (env only) wins over it; neither: admin API off (env TOKEND_ADMIN_TOKEN_FILE)")
	fs.StringVar(&o.defaultIdentity, "default-identity", env("TOKEND_DEFAULT_IDENTITY", tokenapi.DefaultIdentity), "identity of mint requests that name none (env TOKEND_DEFAULT_IDENTITY)")
	fs.StringVar(&o.defaultApp, "default-application", env("TOKEND_DEFAULT_APPLICATION", ""), "application SID of mint requests that name none (env TOKEND_DEFAULT_APPLICATION)")
	fs.StringVar(&o.logLevel, "log-level", env("TOKEND_LOG_LEVEL", "info"), "debug, info, warn or error (env TOKEND_LOG_LEVEL)")
	fs.StringVar(&o.logFormat, "log-format", env("TOKEND_LOG_FORMAT", "text"), "text or json (env TOKEND_LOG_FORMAT)")
	maxBody, err := strconv.Atoi(env("TOKEND_MAX_BODY_BYTES", strconv.Itoa(httpapi.DefaultMaxBodyBytes)))
	if err != nil {
		return nil, fmt.Errorf("TOKEND_MAX_BODY_BYTES: not a number")
	}
	fs.IntVar(&o.maxBodyBytes, "max-body-bytes", maxBody, "largest REST body or gRPC message accepted, in bytes (env TOKEND_MAX_BODY_BYTES)")
	fs.StringVar(&o.corsOriginsRaw, "cors-origins", env("TOKEND_CORS_ORIGINS", ""), "comma-separated origins (scheme://host[:port]) whose web pages may call the REST API from a browser; empty: no CORS (env TOKEND_CORS_ORIGINS)")
	// --help shows the defaults, which come from the environment: never
	// the store's password.
	fs.Lookup("store").DefValue = redactStore(fs.Lookup("store").DefValue)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := layer(fs, o, getenv); err != nil {
		return nil, err
	}
	if o.maxBodyBytes < 1024 || o.maxBodyBytes > 16<<20 {
		return nil, o.invalid("max-body-bytes", "must be between 1024 and %d", 16<<20)
	}
	if o.defaultApp != "" && !tokenapi.ValidSID(o.defaultApp, "AP") {
		return nil, o.invalid("default-application", "must be AP followed by 32 hex digits")
	}
	var v tokenapi.Violations
	// The default identity must suit the default grants (voice): letters,
	// digits and underscore.
	v.CheckIdentity(o.defaultIdentity, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{}})
	if len(v) > 0 {
		return nil, o.invalid("default-identity", "%s", v[0].Description)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, o.invalid("log-level", "must be debug, info, warn or error")
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, o.invalid("log-format", "must be text or json")
	}
	if o.corsOrigins, err = httpapi.ParseOrigins(o.corsOriginsRaw); err != nil {
		return nil, o.invalid("cors-origins", "%v", err)
	}
	return o, nil
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("log-level: must be debug, info, warn or error")
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("log-format: must be text or json")
}

const usage = `usage:
  tokend [flags]                 serve (see tokend --help for the flags)
  tokend rekey [--generate] [flags]
                                 re-encrypt every secret under the primary master key;
                                 --generate first adds a new primary key to the keyring file
  tokend config [flags]          print the effective configuration as YAML, each value's
                                 source as a comment, secrets redacted
  tokend keygen                  print a new master key entry (id:base64) for TOKEND_MASTER_KEY or a key file
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
	case "keygen":
		if len(args) > 0 {
			return fmt.Errorf("keygen: unexpected argument %q", args[0])
		}
		mk, err := secrets.GenerateMasterKey()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, mk.Encode())
		return nil
	case "rekey":
		generate := false
		rest := args[:0:0]
		for _, a := range args {
			if a == "--generate" || a == "-generate" {
				generate = true
				continue
			}
			rest = append(rest, a)
		}
		args = rest
		o, err := parse(args, getenv, stderr)
		if err != nil {
			return err
		}
		log, err := newLogger(o, stderr)
		if err != nil {
			return err
		}
		n, primary, err := server.Rekey(ctx, server.Config{
			DataDir: o.dataDir, Store: o.store, MasterKey: getenv(secrets.EnvVar), MasterKeyFile: o.masterKeyFile, Logger: log,
		}, generate)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-encrypted %d secrets; every secret is now under master key %s\n", n, primary)
		return nil
	case "config":
		o, err := parse(args, getenv, stderr)
		if err != nil {
			return err
		}
		return printConfig(stdout, o, getenv)
	case "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	o, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	adminToken, err := loadAdminToken(getenv("TOKEND_ADMIN_TOKEN"), o.adminTokenFile)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	seed, err := server.SeedFromEnv(getenv)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, server.Config{
		DataDir:            o.dataDir,
		Store:              o.store,
		MasterKey:          getenv(secrets.EnvVar),
		MasterKeyFile:      o.masterKeyFile,
		DefaultIdentity:    o.defaultIdentity,
		DefaultApplication: o.defaultApp,
		Seed:               seed,
		AdminToken:         adminToken,
		MaxBodyBytes:       o.maxBodyBytes,
		Logger:             log,
		CORSOrigins:        o.corsOrigins,
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	grpcLn, err := lc.Listen(ctx, "tcp", o.grpcAddr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("grpc-addr: %w", err)
	}
	httpLn, err := lc.Listen(ctx, "tcp", o.httpAddr)
	if err != nil {
		grpcLn.Close()
		srv.Close()
		return fmt.Errorf("http-addr: %w", err)
	}
	for _, ln := range []net.Listener{grpcLn, httpLn} {
		if !isLoopback(ln.Addr()) {
			log.Warn("listening beyond loopback with no caller authentication: anyone who can reach this address can mint tokens",
				"addr", ln.Addr().String())
		}
	}
	return srv.Serve(ctx, grpcLn, httpLn)
}

// MinAdminTokenLen is the shortest admin token accepted.
const MinAdminTokenLen = 16

// loadAdminToken returns the admin bearer token from the environment value
// or the file (trimmed), or "" when neither is set.
func loadAdminToken(env, file string) (string, error) {
	tok := env
	if tok == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("admin-token-file: %w", err)
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	if tok != "" && len(tok) < MinAdminTokenLen {
		return "", fmt.Errorf("admin token: must be at least %d characters", MinAdminTokenLen)
	}
	if (env != "" || file != "") && tok == "" {
		return "", fmt.Errorf("admin token: empty")
	}
	return tok, nil
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
