package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// fullRecord has every field set.
func fullRecord() Record {
	return Record{
		Time:           time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
		Event:          EventMint,
		Principal:      "billing",
		PrincipalKind:  "credential",
		Identity:       "agent_7",
		ApplicationSID: "AP0123456789abcdef0123456789abcdef",
		Grants:         "voice:outgoing,video",

		OutgoingApplicationSID: "AP11111111111111111111111111111111",
		OutgoingParams:         "from,to",
		PushCredentialSID:      "CR11111111111111111111111111111111",
		Room:                   "support-1",
		ChatServiceSID:         "IS11111111111111111111111111111111",
		ChatPushCredentialSID:  "CR22222222222222222222222222222222",
		ChatDeploymentRoleSID:  "RL11111111111111111111111111111111",
		SyncServiceSID:         "IS22222222222222222222222222222222",
		WorkspaceSID:           "WS11111111111111111111111111111111",
		WorkerSID:              "WK11111111111111111111111111111111",
		TaskRouterRole:         "worker",
		JTI:                    "SK0123456789abcdef0123456789abcdef-1714564800",
		Exp:                    time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC),
		Decision:               Allow,
		Rule:                   "backend-voice",
		Reason:                 "r",
		Action:                 "rotate-key",
		ClientAddr:             "10.0.0.1:5555",
		RequestID:              "req-1",
		Code:                   "OK",
	}
}

var wantKeys = []string{
	"action", "application_sid", "chat_deployment_role_sid", "chat_push_credential_sid", "chat_service_sid",
	"client_addr", "code", "decision", "event", "exp", "grants",
	"identity", "jti", "outgoing_application_sid", "outgoing_params", "principal", "principal_kind",
	"push_credential_sid", "reason", "request_id", "room", "rule", "sync_service_sid", "task_router_role",
	"time", "worker_sid", "workspace_sid",
}

// TestRecordKeys pins the audit log's keys: a new field (such as one that
// could hold a token or a secret) must be added here on purpose.
func TestRecordKeys(t *testing.T) {
	b, err := json.Marshal(fullRecord())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("Record keys = %v\nwant %v", keys, wantKeys)
	}
	// Every field is tagged, so none is written under its Go name.
	rt := reflect.TypeFor[Record]()
	if rt.NumField() != len(wantKeys) {
		t.Errorf("Record has %d fields; want %d", rt.NumField(), len(wantKeys))
	}
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !slices.Contains(wantKeys, name) {
			t.Errorf("field %s has json name %q", f.Name, name)
		}
		if f.Type.Kind() != reflect.String && f.Type != reflect.TypeFor[time.Time]() {
			t.Errorf("field %s is a %v: records hold only strings and times", f.Name, f.Type)
		}
	}
}

func TestOmitEmpty(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Record
		want string
	}{
		{"zero", Record{}, `{}`},
		{"event only", Record{Event: EventVerify}, `{"event":"verify"}`},
		{"deny", Record{Event: EventMint, Decision: Deny, Rule: "default-deny", Reason: "no rule selects caller anonymous", Code: "PermissionDenied"},
			`{"event":"mint","decision":"deny","rule":"default-deny","reason":"no rule selects caller anonymous","code":"PermissionDenied"}`},
		{"times", Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Exp: time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC)},
			`{"time":"2026-01-02T03:04:05.000000006Z","exp":"2026-01-02T04:04:05Z"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}

func readLines(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestOpenAppendsWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for round := range 2 {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			r := fullRecord()
			r.RequestID = fmt.Sprint(round, "-", i)
			r.Time = time.Time{} // Log fills it in
			l.Log(r)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %v; want 0600", perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, data)
	if len(lines) != 6 {
		t.Fatalf("%d lines; want 6:\n%s", len(lines), data)
	}
	for i, m := range lines {
		if want := fmt.Sprint(i/3, "-", i%3); m["request_id"] != want {
			t.Errorf("line %d request_id %v; want %s", i, m["request_id"], want)
		}
		ts, _ := m["time"].(string)
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || time.Since(tm) > time.Minute || !strings.HasSuffix(ts, "Z") {
			t.Errorf("line %d time %q (%v)", i, ts, err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "audit.log")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

func TestConcurrentLogOneLineEach(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, WithQueueSize(100000))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := fullRecord()
				r.RequestID = fmt.Sprint(g, "-", i)
				r.Reason = "multi\nline\x00reason " + strings.Repeat("x", i%50)
				l.Log(r)
				if i%100 == 0 {
					l.Flush()
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, data)
	if len(lines) != goroutines*each || l.Dropped() != 0 {
		t.Fatalf("%d lines, %d dropped; want %d, 0", len(lines), l.Dropped(), goroutines*each)
	}
	seen := map[any]bool{}
	for _, m := range lines {
		seen[m["request_id"]] = true
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct records", len(seen))
	}
}

// gate is a writer that blocks until opened, telling when a write waits.
type gate struct {
	open    chan struct{}
	waiting chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.waiting) })
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	g := &gate{open: make(chan struct{}), waiting: make(chan struct{})}
	l := New(g, WithQueueSize(4))
	l.Log(Record{Event: EventMint, RequestID: "first"})
	<-g.waiting // the writer is stuck writing the first record
	start := time.Now()
	for i := range 99 {
		l.Log(Record{Event: EventMint, RequestID: fmt.Sprint(i)})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Log blocked for %v on a stalled writer", d)
	}
	dropped := l.Dropped()
	if dropped != 99-4 {
		t.Errorf("dropped %d; want 95 (99 logged, 4 queued)", dropped)
	}
	close(g.open)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, g.buf.Bytes())
	var kept int
	var notice map[string]any
	for _, m := range lines {
		if m["event"] == EventDropped {
			notice = m
		} else {
			kept++
		}
	}
	if uint64(kept)+dropped != 100 {
		t.Errorf("%d written + %d dropped != 100", kept, dropped)
	}
	if notice == nil || notice["reason"] != fmt.Sprintf("%d audit records dropped", dropped) {
		t.Errorf("drop notice = %v; want one for %d records", notice, dropped)
	}
	// Logging after Close drops, and does not panic.
	l.Log(Record{Event: EventMint})
	l.Flush()
	if l.Dropped() != dropped+1 {
		t.Errorf("Dropped after Close = %d", l.Dropped())
	}
}

// flaky fails its first n writes.
type flaky struct {
	n   int
	buf bytes.Buffer
}

func (f *flaky) Write(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return 0, errors.New("disk full")
	}
	return f.buf.Write(p)
}

func TestWriteErrorsDoNotStopTheLogger(t *testing.T) {
	f := &flaky{n: 1}
	l := New(f)
	l.Log(Record{Event: EventMint, RequestID: "lost"})
	l.Flush()
	if l.WriteErrors() != 1 {
		t.Fatalf("WriteErrors = %d", l.WriteErrors())
	}
	l.Log(Record{Event: EventMint, RequestID: "kept"})
	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Close = %v; want the write error", err)
	}
	lines := readLines(t, f.buf.Bytes())
	if len(lines) != 1 || lines[0]["request_id"] != "kept" {
		t.Errorf("lines = %v", lines)
	}
}

func TestClip(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	l.Log(Record{Reason: strings.Repeat("é", 2000), Identity: "bad\xffutf8", Principal: strings.Repeat("a", 2000)})
	l.Close()
	lines := readLines(t, buf.Bytes())
	for _, field := range []string{"reason", "principal"} {
		v := lines[0][field].(string)
		if len(v) > maxFieldLen || !strings.HasSuffix(v, "…") {
			t.Errorf("%s of %d bytes not clipped", field, len(v))
		}
	}
	if lines[0]["identity"] != "bad\uFFFDutf8" {
		t.Errorf("identity = %q", lines[0]["identity"])
	}
}

// TestPlain: plain finds what JSON must escape, and any byte that is not
// ASCII, wherever it is in an 8-byte word.
func TestPlain(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", true},
		{"AP0123456789abcdef0123456789abcdef", true},
		{"agent_7 ~!#$%&'()*+,-./:;<=>?@[]^`{|}\x7f", true},
		{"0123456\"", false},
		{"01234567\"", false},
		{"012345678\\9", false},
		{"\x1f1234567", false},
		{"0123456\n", false},
		{"0123456789abcde\x80", false},
		{"zoë", false},
		{"abcdefgh\u202E", false},
	} {
		if got := plain(tc.s); got != tc.want {
			t.Errorf("plain(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestFormatCharactersShown: a format character (category Cf) in any
// field, as a token given to Verify may carry, is written as <U+XXXX> so
// that it cannot make the record read as another; other Unicode is kept.
func TestFormatCharactersShown(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	l.Log(Record{Identity: "admin\u202Etxt.exe", Room: "sup\u200Bport", Principal: "zoë", TaskRouterRole: "w\uFEFF"})
	l.Close()
	lines := readLines(t, buf.Bytes())
	for field, want := range map[string]string{
		"identity": "admin<U+202E>txt.exe", "room": "sup<U+200B>port", "principal": "zoë", "task_router_role": "w<U+FEFF>",
	} {
		if got := lines[0][field]; got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Log(Record{})
	l.Flush()
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}

func TestGrantsSummary(t *testing.T) {
	const ap = "AP0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		g    *tokenv1.Grants
		want string
	}{
		{"nil", nil, ""},
		{"empty", &tokenv1.Grants{}, ""},
		{"voice bare", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{}}, "voice"},
		{"voice incoming false", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{}}}, "voice"},
		{"voice outgoing", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: ap}}, Video: &tokenv1.VideoGrant{Room: "r"}}, "voice:outgoing,video"},
		{"voice both", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}, Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: ap}}}, "voice:incoming+outgoing"},
		{"chat only", &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, "chat"},
		{"sync and player", &tokenv1.Grants{DataSync: &tokenv1.SyncGrant{}, Player: &structpb.Struct{}}, "data_sync,player"},
		{"task router and video", &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{}, Video: &tokenv1.VideoGrant{}}, "video,task_router"},
		{"voice outgoing only", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: ap}}}, "voice:outgoing"},
		{"all", &tokenv1.Grants{
			Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}, Video: &tokenv1.VideoGrant{},
			Chat: &tokenv1.ChatGrant{}, DataSync: &tokenv1.SyncGrant{}, TaskRouter: &tokenv1.TaskRouterGrant{}, Player: &structpb.Struct{},
		}, "voice:incoming,video,chat,data_sync,task_router,player"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GrantsSummary(tc.g); got != tc.want {
				t.Errorf("GrantsSummary = %q; want %q", got, tc.want)
			}
		})
	}
}
