package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

func defineVerify(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		const cmd = "verify"
		if len(args) > 1 {
			// Not quoted: they may be tokens.
			return fmt.Errorf("%s: takes at most one argument, the token (better given on stdin)", cmd)
		}
		cl, err := c.dialCaller()
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		defer cl.Close()
		var token string
		if len(args) == 1 && args[0] != "-" {
			token = strings.TrimSpace(args[0])
		} else if token, err = c.readToken(ctx); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		if token == "" {
			return fmt.Errorf("%s: no token: give it on stdin", cmd)
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		resp, err := tokenv1.NewTokenServiceClient(cl.Conn()).Verify(ctx, &tokenv1.VerifyRequest{Token: token})
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, c.rpcError(err))
		}
		now := time.Now()
		if err := c.output(resp, func(w io.Writer) { verifyDetail(w, resp, now) }); err != nil {
			return err
		}
		if !resp.GetValid() {
			return fmt.Errorf("%s: the token is not valid: Twilio would answer %d", cmd, resp.GetTwilioErrorCode())
		}
		return nil
	}
}

// readToken reads the token to verify from stdin, after a prompt and
// without echo if stdin is a terminal. Surrounding whitespace is trimmed.
func (c *cli) readToken(ctx context.Context) (string, error) {
	var b []byte
	var err error
	if fd, tty := terminal(c.stdin); tty {
		fmt.Fprint(c.stderr, "Access token to verify (not echoed): ")
		b, err = readPassword(ctx, fd)
		fmt.Fprintln(c.stderr)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the token: %w", err)
		}
	} else if b, err = readContext(ctx, func() ([]byte, error) { return readLimited(c.stdin) }); err != nil {
		return "", fmt.Errorf("reading the token from stdin: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func verifyDetail(w io.Writer, r *tokenv1.VerifyResponse, now time.Time) {
	rows := [][2]string{{"VALID", yesNo(r.GetValid())}}
	if code := r.GetTwilioErrorCode(); code != 0 {
		rows = append(rows, [2]string{"TWILIO ERROR", fmt.Sprint(code)})
	}
	if reason := r.GetReason(); reason != "" {
		rows = append(rows, [2]string{"REASON", cell(reason)})
	}
	key := cell(r.GetApiKeySid())
	if state := r.GetKeyState(); state != "" {
		key += " (" + cell(state) + ")"
	} else if r.GetApiKeySid() != "" {
		key += " (not a key tokend holds)"
	}
	rows = append(rows,
		[2]string{"API KEY", key},
		[2]string{"APPLICATION", cell(r.GetApplicationSid())},
		[2]string{"EXPIRES", expiry(r.GetExpiresAt(), now)},
	)
	for _, row := range rows {
		fmt.Fprintf(w, "%s\t%s\n", row[0], row[1])
	}
	printStructs(w, r.GetHeader(), r.GetClaims())
}
