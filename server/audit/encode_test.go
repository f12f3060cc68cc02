package audit

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestAppendRecordMatchesEncodingJSON: the hand-written encoder writes
// what encoding/json writes for Record (as decoded JSON), empty fields
// left out alike.
func TestAppendRecordMatchesEncodingJSON(t *testing.T) {
	full := Record{
		Time: time.Date(2026, 11, 27, 14, 0, 0, 123456789, time.UTC), Event: EventMint,
		Principal: `svc "quoted" \ back`, PrincipalKind: "credential", Identity: "alice\u2028x",
		ApplicationSID: "APdddddddddddddddddddddddddddddddd", Grants: "voice:outgoing", JTI: "SKb-1",
		OutgoingApplicationSID: "APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", OutgoingParams: `"a,b",to`, PushCredentialSID: "CRx",
		Room: "room \"7\"", ChatServiceSID: "ISa", ChatPushCredentialSID: "CRb", ChatDeploymentRoleSID: "RLc",
		SyncServiceSID: "ISd", WorkspaceSID: "WSe", WorkerSID: "WKf", TaskRouterRole: "worker",
		Exp: time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC), Decision: Allow, Rule: "r", Reason: "tab\there",
		Action: "add_key", ClientAddr: "127.0.0.1:1", RequestID: "abc", Code: "OK",
	}
	for name, r := range map[string]Record{"full": full, "sparse": {Time: full.Time, Event: EventAdmin, Action: "rekey"}} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got := appendRecord(nil, &r)
		if got[len(got)-1] != '\n' {
			t.Errorf("%s: line does not end in a newline", name)
		}
		var w, g map[string]any
		json.Unmarshal(want, &w)
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: appendRecord wrote invalid JSON %s: %v", name, got, err)
		}
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("%s: appendRecord differs from encoding/json (-json +appendRecord):\n%s", name, diff)
		}
	}
}

// TestAppendTime: appendTime writes what time.RFC3339Nano writes, for
// UTC times (digit by digit) and others (through AppendFormat).
func TestAppendTime(t *testing.T) {
	times := []time.Time{
		time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 5, 1, 12, 0, 0, 120000000, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 100, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 5, 1, 12, 0, 0, 5, time.FixedZone("x", 3600)),
		time.Unix(1714564800, 0),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		times = append(times, time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).UTC())
	}
	for _, tm := range times {
		want := tm.Format(time.RFC3339Nano)
		if got := string(appendTime(nil, tm, &timeText)); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

// BenchmarkAppendRecord is the encoding of a mint's record, done in the
// minting goroutine.
func BenchmarkAppendRecord(b *testing.B) {
	r := Record{
		Time: time.Date(2026, 11, 27, 14, 0, 0, 123456789, time.UTC), Event: EventMint, Principal: "load", PrincipalKind: "credential",
		Identity: "user", ApplicationSID: "APdddddddddddddddddddddddddddddddd", Grants: "voice:outgoing",
		OutgoingApplicationSID: "APdddddddddddddddddddddddddddddddd", JTI: "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-92c3b985e4788e7d1aeca82996ca4e90",
		Exp: time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC), Decision: Allow, Rule: "load",
		ClientAddr: "127.0.0.1:36960", RequestID: "9d38b0ddbee427c922d60b03daf5bd12", Code: "OK",
	}
	b.ReportAllocs()
	buf := make([]byte, 0, 1024)
	for b.Loop() {
		buf = appendRecord(buf[:0], &r)
	}
	b.SetBytes(int64(len(buf)))
}
