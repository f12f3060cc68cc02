package audit

import (
	"encoding/json"
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
