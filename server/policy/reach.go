package policy

import (
	"slices"
	"strconv"
	"strings"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// Reach is what a token lets its holder do: who signs it, for which
// identity, and every SID and scope its grants carry. It is computed once
// per mint from the grants that will be signed (the request's, or the
// application's defaults) and is what the policy decides, the audit record
// names and an explanation describes, so that nothing a token authorizes
// escapes the policy.
//
// Empty strings mean the token carries no such scope. Reach holds no
// secret; OutgoingParams' values (caller data) are only read for their
// keys.
type Reach struct {
	// Application is the TwiML application whose API key signs the token.
	Application string
	// Identity is the token's identity.
	Identity string
	// IdentityRequested is set when the request named the identity (rather
	// than getting the default one). An anonymous rule gives its own fixed
	// or generated identity, and denies a request that named another (or,
	// when it generates one, any): after such a decision the caller
	// replaces Identity with Decision.Identity.
	IdentityRequested bool

	// Voice: the token carries a voice grant; Incoming, that it may receive
	// calls; OutgoingApplication, the TwiML application its outgoing calls
	// run through (empty: no outgoing calls); OutgoingParams, the
	// parameters passed to that application; PushCredential, the push
	// credential SID.
	Voice               bool
	Incoming            bool
	OutgoingApplication string
	OutgoingParams      map[string]string
	PushCredential      string

	// Video: the token carries a video grant; Room is its room (empty: any
	// room).
	Video bool
	Room  string

	// Chat: the token carries a chat grant, for ChatService, with
	// ChatPushCredential and ChatDeploymentRole.
	Chat                                                bool
	ChatService, ChatPushCredential, ChatDeploymentRole string

	// Sync: the token carries a Sync grant, for SyncService.
	Sync        bool
	SyncService string

	// TaskRouter: the token carries a TaskRouter grant for Workspace, as
	// Worker, with Role.
	TaskRouter              bool
	Workspace, Worker, Role string

	// Player: the token carries a player grant.
	Player bool
}

// ReachOf returns the reach of a token for identity, signed by the
// application app, carrying grants g (nil: no grants). It does not
// allocate.
func ReachOf(app, identity string, g *tokenv1.Grants) Reach {
	r := Reach{Application: app, Identity: identity}
	if v := g.GetVoice(); v != nil {
		r.Voice = true
		r.Incoming = v.GetIncoming().GetAllow()
		if o := v.GetOutgoing(); o != nil {
			r.OutgoingApplication = o.GetApplicationSid()
			r.OutgoingParams = o.GetParams()
		}
		r.PushCredential = v.GetPushCredentialSid()
	}
	if v := g.GetVideo(); v != nil {
		r.Video, r.Room = true, v.GetRoom()
	}
	if c := g.GetChat(); c != nil {
		r.Chat = true
		r.ChatService, r.ChatPushCredential, r.ChatDeploymentRole = c.GetServiceSid(), c.GetPushCredentialSid(), c.GetDeploymentRoleSid()
	}
	if s := g.GetDataSync(); s != nil {
		r.Sync, r.SyncService = true, s.GetServiceSid()
	}
	if t := g.GetTaskRouter(); t != nil {
		r.TaskRouter = true
		r.Workspace, r.Worker, r.Role = t.GetWorkspaceSid(), t.GetWorkerSid(), t.GetRole()
	}
	r.Player = g.GetPlayer() != nil
	return r
}

// ParamKeys returns the keys of OutgoingParams, sorted, joined by commas
// (empty when there are none); a key holding a comma, a quote or a
// backslash is written as a Go-quoted string so that the list reads one
// way only. It allocates only when there are params.
func (r *Reach) ParamKeys() string {
	if len(r.OutgoingParams) == 0 {
		return ""
	}
	keys := make([]string, 0, len(r.OutgoingParams))
	for k := range r.OutgoingParams {
		if strings.ContainsAny(k, `,"\`) {
			k = strconv.Quote(k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}
