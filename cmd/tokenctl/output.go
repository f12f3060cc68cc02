package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// output prints resp as JSON with --json, else as the table that table
// writes (tab-separated cells, aligned by a tabwriter).
func (c *cli) output(resp proto.Message, table func(w io.Writer)) error {
	if c.json {
		return c.printJSON(resp)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func (c *cli) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	return err
}

func appsTable(w io.Writer, apps ...*tokenv1.Application) {
	fmt.Fprintln(w, "SID\tACCOUNT\tNAME\tACTIVE KEY\tMAX TTL\tREGION\tUPDATED")
	for _, a := range apps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(a.GetApplicationSid()), cell(a.GetAccountSid()),
			cell(a.GetFriendlyName()), cell(a.GetActiveApiKeySid()), maxTTL(a.GetMaxTtlSeconds()),
			cell(a.GetRegion()), timestamp(a.GetUpdatedAt()))
	}
}

func appDetail(w io.Writer, a *tokenv1.Application) {
	grants := "built-in (outgoing voice through this application)"
	if g := a.GetDefaultGrants(); g != nil {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(g)
		if err != nil {
			grants = "? (" + err.Error() + ")"
		} else {
			grants = string(b)
		}
	}
	for _, row := range [][2]string{
		{"SID", cell(a.GetApplicationSid())},
		{"ACCOUNT", cell(a.GetAccountSid())},
		{"NAME", cell(a.GetFriendlyName())},
		{"ACTIVE KEY", cell(a.GetActiveApiKeySid())},
		{"MAX TTL", maxTTL(a.GetMaxTtlSeconds())},
		{"REGION", cell(a.GetRegion())},
		{"DEFAULT GRANTS", cell(grants)},
		{"CREATED", timestamp(a.GetCreatedAt())},
		{"UPDATED", timestamp(a.GetUpdatedAt())},
	} {
		fmt.Fprintf(w, "%s\t%s\n", row[0], row[1])
	}
}

func keysTable(w io.Writer, keys ...*tokenv1.Key) {
	fmt.Fprintln(w, "SID\tSTATE\tADDED\tACTIVATED\tLAST SIGNED\tOUTSTANDING UNTIL\tMASTER KEY\tAT TWILIO\tDELETE AFTER")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(k.GetApiKeySid()), cell(k.GetState()),
			timestamp(k.GetAddedAt()), timestamp(k.GetActivatedAt()), timestamp(k.GetLastSignedAt()),
			timestamp(k.GetOutstandingUntil()), cell(k.GetMasterKeyId()), cell(k.GetTwilioState()), timestamp(k.GetDeleteAfter()))
	}
}

// cell makes s fit in a table cell: "-" for empty, control characters
// (tabs, newlines, terminal escapes) replaced.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

func timestamp(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func maxTTL(s int32) string {
	if s == 0 {
		return "86400s (default)"
	}
	return fmt.Sprintf("%ds", s)
}
