package policy

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

const (
	app3  = "AP33333333333333333333333333333333"
	cr1   = "CR11111111111111111111111111111111"
	cr2   = "CR22222222222222222222222222222222"
	is1   = "IS11111111111111111111111111111111"
	is2   = "IS22222222222222222222222222222222"
	rl1   = "RL11111111111111111111111111111111"
	rl2   = "RL22222222222222222222222222222222"
	ws1   = "WS11111111111111111111111111111111"
	ws2   = "WS22222222222222222222222222222222"
	wk1   = "WK11111111111111111111111111111111"
	wk2   = "WK22222222222222222222222222222222"
	reach = `rules:
  - name: plain
    principals: ["credential:plain"]
    applications: ["*"]
    identities: {pattern: ".*"}
    grants: {voice: true, chat: true, data_sync: true, task_router: true, video: true}
  - name: scoped
    principals: ["credential:scoped"]
    applications: ["` + app1 + `"]
    identities: {pattern: ".*"}
    grants:
      voice:
        incoming: true
        outgoing:
          applications: [self, "` + app3 + `"]
          params: [to, "from"]
        push_credentials: ["` + cr1 + `"]
      video: {rooms: "support-[0-9]+"}
      chat: {services: ["` + is1 + `"], push_credentials: ["` + cr1 + `"], deployment_roles: ["` + rl1 + `"]}
      data_sync: {services: ["` + is1 + `"]}
      task_router: {workspaces: ["` + ws1 + `"], workers: ["` + wk1 + `"], roles: [worker]}
  - name: open
    principals: ["credential:open"]
    applications: ["*"]
    identities: {pattern: ".*"}
    grants:
      voice: {outgoing: {applications: "*", params: "*"}}
  - name: others-only
    principals: ["credential:others"]
    applications: ["*"]
    identities: {pattern: ".*"}
    grants:
      voice: {outgoing: {applications: ["` + app3 + `"], params: []}}
`
)

func outgoing(app string, params map[string]string) *tokenv1.Grants {
	return &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app, Params: params}}}
}

// TestDecideReach: every SID and scope a grant carries is decided, allowed
// and denied, for a rule that names none (plain), one that restricts each
// (scoped) and ones that open or move outgoing calls.
func TestDecideReach(t *testing.T) {
	p := mustParse(t, reach)
	plain := Caller{Kind: KindCredential, Name: "plain"}
	scoped := Caller{Kind: KindCredential, Name: "scoped"}
	open := Caller{Kind: KindCredential, Name: "open"}
	others := Caller{Kind: KindCredential, Name: "others"}
	for _, tc := range []struct {
		name   string
		c      Caller
		g      *tokenv1.Grants
		app    string
		reason string // "" when allowed; else a substring of the reason
	}{
		// voice outgoing application: the signing one unless named.
		{"plain_outgoing_self", plain, outgoing(app1, nil), app1, ""},
		{"plain_outgoing_self_case", plain, outgoing("AP"+strings.ToUpper(app1[2:]), nil), app1, ""},
		{"plain_outgoing_other", plain, outgoing(app2, nil), app1, "voice.outgoing.application_sid " + app2 + " is not allowed: outgoing calls may run through the signing application " + app1},
		{"scoped_outgoing_self", scoped, outgoing(app1, nil), app1, ""},
		{"scoped_outgoing_listed", scoped, outgoing(app3, nil), app1, ""},
		{"scoped_outgoing_other", scoped, outgoing(app2, nil), app1, "voice.outgoing.application_sid " + app2 + " is not allowed: outgoing calls may run through the signing application " + app1 + ", " + app3},
		{"open_outgoing_any", open, outgoing(app2, nil), app1, ""},
		{"others_outgoing_self_denied", others, outgoing(app1, nil), app1, "outgoing calls may run through " + app3},
		{"others_outgoing_listed", others, outgoing(app3, nil), app1, ""},
		// params: none by default, a list of keys, or any.
		{"plain_params_denied", plain, outgoing(app1, map[string]string{"to": "x"}), app1, `voice.outgoing.params key "to" is not allowed (allowed keys: none)`},
		{"scoped_params_listed", scoped, outgoing(app1, map[string]string{"to": "x", "from": "y"}), app1, ""},
		{"scoped_params_unlisted", scoped, outgoing(app1, map[string]string{"to": "x", "amount": "9"}), app1, `voice.outgoing.params key "amount" is not allowed (allowed keys: to, from)`},
		{"open_params_any", open, outgoing(app1, map[string]string{"anything": "x"}), app1, ""},
		{"others_params_none", others, outgoing(app3, map[string]string{"to": "x"}), app1, `key "to" is not allowed`},
		// incoming.
		{"scoped_incoming", scoped, voice(true, ""), app1, ""},
		{"open_incoming_denied", open, voice(true, ""), app1, "grant voice.incoming is not allowed"},
		// push credentials.
		{"plain_voice_push_any", plain, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{PushCredentialSid: cr2}}, app1, ""},
		{"scoped_voice_push_listed", scoped, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{PushCredentialSid: cr1}}, app1, ""},
		{"scoped_voice_push_other", scoped, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{PushCredentialSid: cr2}}, app1, "voice.push_credential_sid " + cr2 + " is not allowed (allowed: " + cr1 + ")"},
		// video room.
		{"scoped_room_match", scoped, video("support-7"), app1, ""},
		{"scoped_room_other", scoped, video("board"), app1, "video room board does not match support-[0-9]+"},
		{"plain_room_any", plain, video(""), app1, ""},
		// chat.
		{"plain_chat_any_service", plain, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is2}}, app1, ""},
		{"scoped_chat_listed", scoped, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is1, PushCredentialSid: cr1, DeploymentRoleSid: rl1}}, app1, ""},
		{"scoped_chat_other_service", scoped, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is2}}, app1, "chat.service_sid " + is2 + " is not allowed (allowed: " + is1 + ")"},
		{"scoped_chat_no_service", scoped, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, app1, "chat.service_sid is required by this rule"},
		{"scoped_chat_other_push", scoped, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is1, PushCredentialSid: cr2}}, app1, "chat.push_credential_sid " + cr2},
		{"scoped_chat_other_role", scoped, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is1, DeploymentRoleSid: rl2}}, app1, "chat.deployment_role_sid " + rl2},
		{"open_chat_denied", open, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is1}}, app1, "grant chat is not allowed"},
		// sync.
		{"scoped_sync_listed", scoped, &tokenv1.Grants{DataSync: &tokenv1.SyncGrant{ServiceSid: is1}}, app1, ""},
		{"scoped_sync_other", scoped, &tokenv1.Grants{DataSync: &tokenv1.SyncGrant{ServiceSid: is2}}, app1, "data_sync.service_sid " + is2 + " is not allowed"},
		{"plain_sync_any", plain, &tokenv1.Grants{DataSync: &tokenv1.SyncGrant{ServiceSid: is2}}, app1, ""},
		// TaskRouter.
		{"scoped_taskrouter_listed", scoped, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws1, WorkerSid: wk1, Role: "worker"}}, app1, ""},
		{"scoped_taskrouter_other_workspace", scoped, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws2, WorkerSid: wk1, Role: "worker"}}, app1, "task_router.workspace_sid " + ws2 + " is not allowed"},
		{"scoped_taskrouter_other_worker", scoped, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws1, WorkerSid: wk2, Role: "worker"}}, app1, "task_router.worker_sid " + wk2 + " is not allowed"},
		{"scoped_taskrouter_other_role", scoped, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws1, WorkerSid: wk1, Role: "supervisor"}}, app1, "task_router.role supervisor is not allowed (allowed: worker)"},
		{"scoped_taskrouter_no_worker", scoped, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws1, Role: "worker"}}, app1, "task_router.worker_sid is required by this rule"},
		{"plain_taskrouter_any", plain, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws2, WorkerSid: wk2, Role: "admin"}}, app1, ""},
		// player.
		{"plain_player_denied", plain, &tokenv1.Grants{Player: &structpb.Struct{}}, app1, "grant player is not allowed"},
		// The signing application is still decided first.
		{"scoped_other_signer", scoped, outgoing(app2, nil), app2, "application " + app2 + " is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(p, tc.c, tc.g, "agent_1", tc.app, 60)
			if tc.reason == "" {
				if !d.Allowed {
					t.Fatalf("Decide(%s) = %+v, want allowed", tc.name, d)
				}
				return
			}
			if d.Allowed || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide(%s) = %+v, want denied with a reason containing %q", tc.name, d, tc.reason)
			}
		})
	}
}

func TestParseReachErrors(t *testing.T) {
	const head = "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n  grants:\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown voice field", "    voice: {incoming: true, outgoin: true}\n", "p.yaml:7: rules[0].grants.voice.outgoin: unknown field (known: incoming, outgoing, push_credentials)"},
		{"unknown outgoing field", "    voice:\n      outgoing: {apps: [self]}\n", "p.yaml:8: rules[0].grants.voice.outgoing.apps: unknown field (known: applications, params)"},
		{"bad outgoing sid", "    voice:\n      outgoing:\n        applications: [AP12]\n", `p.yaml:9: rules[0].grants.voice.outgoing.applications[0]: must be "*", "self" or a SID: AP followed by 32 hex digits`},
		{"wrong push prefix", "    voice: {push_credentials: [\"" + is1 + "\"]}\n", `p.yaml:7: rules[0].grants.voice.push_credentials[0]: must be "*" or a SID: CR followed by 32 hex digits`},
		{"params not list", "    voice: {outgoing: {params: to}}\n", `p.yaml:7: rules[0].grants.voice.outgoing.params: must be "*" or a list of names`},
		{"unknown chat field", "    chat: {service: [\"" + is1 + "\"]}\n", "p.yaml:7: rules[0].grants.chat.service: unknown field (known: services, push_credentials, deployment_roles)"},
		{"unknown task_router field", "    task_router: {worker: [\"" + wk1 + "\"]}\n", "p.yaml:7: rules[0].grants.task_router.worker: unknown field (known: workspaces, workers, roles)"},
		{"sync wrong prefix", "    data_sync: {services: [\"" + ws1 + "\"]}\n", "rules[0].grants.data_sync.services[0]: must be \"*\" or a SID: IS followed"},
		{"self outside outgoing", "    chat: {services: [self]}\n", "rules[0].grants.chat.services[0]: must be \"*\" or a SID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head+tc.yaml), "p.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseIdentityFormatCharacter(t *testing.T) {
	const src = "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {list: [alice, \"bob\\u202E\"]}\n"
	_, err := Parse([]byte(src), "p.yaml")
	if want := "p.yaml:5: rules[0].identities.list[1]: must not contain Unicode format characters (category Cf): found U+202E"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse = %v, want %q", err, want)
	}
}

func TestReachOf(t *testing.T) {
	g := &tokenv1.Grants{
		Voice: &tokenv1.VoiceGrant{
			Incoming:          &tokenv1.VoiceGrant_Incoming{Allow: true},
			Outgoing:          &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app3, Params: map[string]string{"to": "x", "a,b": "y"}},
			PushCredentialSid: cr1,
		},
		Video:      &tokenv1.VideoGrant{Room: "r"},
		Chat:       &tokenv1.ChatGrant{ServiceSid: is1, PushCredentialSid: cr2, DeploymentRoleSid: rl1},
		DataSync:   &tokenv1.SyncGrant{ServiceSid: is2},
		TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws1, WorkerSid: wk1, Role: "worker"},
		Player:     &structpb.Struct{},
	}
	r := ReachOf(app1, "alice", g)
	want := Reach{
		Application: app1, Identity: "alice",
		Voice: true, Incoming: true, OutgoingApplication: app3, OutgoingParams: g.Voice.Outgoing.Params, PushCredential: cr1,
		Video: true, Room: "r",
		Chat: true, ChatService: is1, ChatPushCredential: cr2, ChatDeploymentRole: rl1,
		Sync: true, SyncService: is2,
		TaskRouter: true, Workspace: ws1, Worker: wk1, Role: "worker",
		Player: true,
	}
	if r.Application != want.Application || r.Identity != want.Identity || r.Voice != want.Voice || r.Incoming != want.Incoming ||
		r.OutgoingApplication != want.OutgoingApplication || len(r.OutgoingParams) != 2 || r.PushCredential != want.PushCredential ||
		r.Video != want.Video || r.Room != want.Room || r.Chat != want.Chat || r.ChatService != want.ChatService ||
		r.ChatPushCredential != want.ChatPushCredential || r.ChatDeploymentRole != want.ChatDeploymentRole ||
		r.Sync != want.Sync || r.SyncService != want.SyncService || r.TaskRouter != want.TaskRouter ||
		r.Workspace != want.Workspace || r.Worker != want.Worker || r.Role != want.Role || r.Player != want.Player {
		t.Errorf("ReachOf = %+v\nwant %+v", r, want)
	}
	if got, want := r.ParamKeys(), `"a,b",to`; got != want {
		t.Errorf("ParamKeys = %q, want %q", got, want)
	}
	if got := ReachOf(app1, "bob", nil); got.Voice || got.Video || got.Chat || got.Sync || got.TaskRouter || got.Player || got.ParamKeys() != "" {
		t.Errorf("ReachOf(no grants) = %+v, want nothing reached", got)
	}
}

func TestMayMintFor(t *testing.T) {
	p := mustParse(t, reach)
	for _, tc := range []struct {
		c    Caller
		app  string
		want bool
	}{
		{Caller{Kind: KindCredential, Name: "scoped"}, app1, true},
		{Caller{Kind: KindCredential, Name: "scoped"}, app2, false},
		{Caller{Kind: KindCredential, Name: "plain"}, app2, true},
		{Caller{Kind: KindCredential, Name: "nobody"}, app1, false},
	} {
		if got := p.MayMintFor(tc.c, tc.app); got != tc.want {
			t.Errorf("MayMintFor(%v, %s) = %v, want %v", tc.c, tc.app, got, tc.want)
		}
	}
	var nilPolicy *Policy
	if nilPolicy.MayMintFor(Caller{Kind: KindCredential, Name: "plain"}, app1) {
		t.Error("a nil policy lets a caller mint")
	}
}

// TestREADMEPolicy: the example policy in the README parses, and its
// contact-centre rule decides what it says.
func TestREADMEPolicy(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Callers and policy")
	if !ok {
		t.Fatal("README has no section Callers and policy")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	src, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no YAML policy in the section Callers and policy")
	}
	p, err := Parse([]byte(src), "README.md")
	if err != nil {
		t.Fatalf("the README's policy does not parse: %v", err)
	}
	c := Caller{Kind: KindCredential, Name: "contact-centre"}
	const app = "AP0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		g       *tokenv1.Grants
		allowed bool
	}{
		{outgoing(app, map[string]string{"queue": "sales"}), true},
		{outgoing("AP1111111111111111111111111111111a", nil), true},
		{outgoing(app2, nil), false},
		{outgoing(app, map[string]string{"amount": "1"}), false},
		{&tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: "IS0123456789abcdef0123456789abcdef"}}, true},
		{&tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: is2}}, false},
		{&tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: "WS0123456789abcdef0123456789abcdef", WorkerSid: wk2, Role: "worker"}}, true},
	} {
		if d := decide(p, c, tc.g, "agent_1", app, 60); d.Allowed != tc.allowed {
			t.Errorf("README policy, contact-centre, %v: %+v, want allowed %v", tc.g, d, tc.allowed)
		}
	}
}
