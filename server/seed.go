package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/tokenapi"
)

// Seed holds the four environment variables of the Twilio Function tokend
// replaces. All four or none must be set.
type Seed struct {
	AccountSID  string // ACCOUNT_SID
	APIKey      string // API_KEY
	APISecret   string // API_SECRET
	TwiMLAppSID string // TWIML_APP_SID
}

// The seed's environment variable names.
const (
	EnvAccountSID  = "ACCOUNT_SID"
	EnvAPIKey      = "API_KEY"
	EnvAPISecret   = "API_SECRET"
	EnvTwiMLAppSID = "TWIML_APP_SID"
)

// SeedAliases are the other names the seed's variables go by in Twilio's
// quickstarts and function templates, by canonical name. tokend reads
// them like the canonical names; setting an alias and its canonical name
// (or two aliases) to different values is an error.
var SeedAliases = map[string][]string{
	EnvAccountSID:  {"TWILIO_ACCOUNT_SID"},
	EnvAPIKey:      {"TWILIO_API_KEY"},
	EnvAPISecret:   {"TWILIO_API_SECRET"},
	EnvTwiMLAppSID: {"TWILIO_TWIML_APP_SID", "TWIML_APPLICATION_SID"},
}

// seedVar reads one seed variable under its canonical name and its
// aliases. It returns the value, the name it was read from ("" when none
// is set) and an error when two of the names hold different values (the
// values are never part of it: one may be a secret).
func seedVar(getenv func(string) string, canonical string, trim bool) (value, from string, err error) {
	for _, name := range append([]string{canonical}, SeedAliases[canonical]...) {
		v := getenv(name)
		if trim {
			v = strings.TrimSpace(v)
		}
		if v == "" {
			continue
		}
		switch {
		case from == "":
			value, from = v, name
		case v != value:
			return "", "", fmt.Errorf("%s and %s are both set, to different values: set only one (%s is the name tokend documents, %s an alias from Twilio's samples)",
				from, name, canonical, strings.Join(SeedAliases[canonical], ", "))
		}
	}
	return value, from, nil
}

// SeedFromEnv reads the seed's variables, under their canonical names or
// their aliases (SeedAliases). Half a set is an error naming the missing
// ones; malformed SIDs are errors naming the variable as it was set. The
// secret is never part of an error.
func SeedFromEnv(getenv func(string) string) (Seed, error) {
	type seedVarT struct {
		name, value, from string
		dst               *string
	}
	var s Seed
	vars := []*seedVarT{
		{name: EnvAccountSID, dst: &s.AccountSID}, {name: EnvAPIKey, dst: &s.APIKey},
		{name: EnvAPISecret, dst: &s.APISecret}, {name: EnvTwiMLAppSID, dst: &s.TwiMLAppSID},
	}
	var errs []error
	for _, v := range vars {
		var err error
		v.value, v.from, err = seedVar(getenv, v.name, v.name != EnvAPISecret)
		if err != nil {
			errs = append(errs, err)
		}
		*v.dst = v.value
	}
	if err := errors.Join(errs...); err != nil {
		return Seed{}, err
	}
	var set, missing []string
	for _, v := range vars {
		if v.from == "" {
			names := v.name
			if a := SeedAliases[v.name]; len(a) > 0 {
				names += " (or " + strings.Join(a, " or ") + ")"
			}
			missing = append(missing, names)
		} else {
			set = append(set, v.from)
		}
	}
	switch len(missing) {
	case 0:
	case len(vars):
		return Seed{}, nil
	default:
		// Never fall back to the demo application when some are set.
		return Seed{}, fmt.Errorf("seed credentials are incomplete: %s set but %s missing; set all four or none",
			strings.Join(set, ", "), strings.Join(missing, ", "))
	}
	for _, c := range []struct {
		v      *seedVarT
		prefix string
	}{{vars[0], "AC"}, {vars[1], "SK"}, {vars[3], "AP"}} {
		if !tokenapi.ValidSID(c.v.value, c.prefix) {
			errs = append(errs, fmt.Errorf("%s must be %s followed by 32 hex digits", c.v.from, c.prefix))
		}
	}
	return s, errors.Join(errs...)
}

// IsZero reports whether no seed credentials were given.
func (s Seed) IsZero() bool { return s == Seed{} }

// The demo application, created when tokend starts with no seed
// credentials and an empty store, so that `make run` mints at once.
const (
	DemoApplicationSID = "AP00000000000000000000000000000000"
	DemoAccountSID     = "AC00000000000000000000000000000000"
	DemoAPIKeySID      = "SK00000000000000000000000000000000"
	DemoFriendlyName   = "tokend demo (placeholder SIDs: Twilio rejects its tokens)"
)

// applySeed upserts the seed's application and key, or creates the demo
// application when there is no seed and the store is empty. The keystore
// must be loaded (it tells whether the store is empty); applySeed does not
// reload it.
//
// The seed application becomes the stored default application when it is
// new to the store or when no default is set; otherwise the default stays
// (an operator may have changed it through the admin API, and a restart
// with the same environment must not undo that).
func applySeed(ctx context.Context, ks *keystore.Keystore, seed Seed, log *slog.Logger) error {
	st := ks.Store()
	if seed.IsZero() {
		// The keystore is loaded: no need to read every application again.
		empty := ks.Len() == 0
		if empty {
			if _, err := ks.EnsureApplication(ctx, storage.Application{
				SID: DemoApplicationSID, AccountSID: DemoAccountSID, FriendlyName: DemoFriendlyName,
			}); err != nil {
				return fmt.Errorf("create demo application: %w", err)
			}
			secret := make([]byte, 16)
			rand.Read(secret)
			demoSecret := []byte(hex.EncodeToString(secret))
			if _, err := ks.PutKey(ctx, DemoApplicationSID, DemoAPIKeySID, demoSecret, true); err != nil {
				return fmt.Errorf("create demo key: %w", err)
			}
		}
		if empty || ks.Lookup(DemoApplicationSID) != nil {
			log.Warn("serving the demo application with placeholder SIDs and a random secret: its tokens work for trying tokend but Twilio rejects them; set ACCOUNT_SID, API_KEY, API_SECRET and TWIML_APP_SID for real tokens",
				"application_sid", DemoApplicationSID)
		}
		return nil
	}

	created, err := ks.EnsureApplication(ctx, storage.Application{
		SID: seed.TwiMLAppSID, AccountSID: seed.AccountSID, FriendlyName: "seed application (" + EnvTwiMLAppSID + ")",
	})
	if err != nil {
		return fmt.Errorf("upsert seed application %s: %w", seed.TwiMLAppSID, err)
	}
	// A key new to the store is activated: the operator changed API_KEY to
	// rotate. A known key keeps its state, so a rotation made through the
	// admin API survives a restart with the same environment.
	_, err = st.GetKey(ctx, seed.TwiMLAppSID, seed.APIKey)
	isNew := errors.Is(err, storage.ErrNotFound)
	if err != nil && !isNew {
		return fmt.Errorf("read seed key: %w", err)
	}
	if _, err := ks.PutKey(ctx, seed.TwiMLAppSID, seed.APIKey, []byte(seed.APISecret), isNew); err != nil {
		return fmt.Errorf("upsert seed key %s: %w", seed.APIKey, err)
	}
	if err := st.DeleteApplication(ctx, DemoApplicationSID); err == nil {
		log.Info("removed the demo application: real credentials are configured", "application_sid", DemoApplicationSID)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("remove demo application: %w", err)
	}
	cur, err := st.DefaultApplication(ctx)
	if err != nil {
		return fmt.Errorf("read default application: %w", err)
	}
	switch {
	case created || cur == "":
		if err := st.SetDefaultApplication(ctx, seed.TwiMLAppSID); err != nil {
			return fmt.Errorf("make the seed application the default: %w", err)
		}
	case cur != seed.TwiMLAppSID:
		log.Info("the default application stays the one set through the admin API, not the seed application",
			"default_application_sid", cur, "seed_application_sid", seed.TwiMLAppSID)
	}
	log.Info("seed credentials applied", "application_sid", seed.TwiMLAppSID, "account_sid", seed.AccountSID, "api_key_sid", seed.APIKey)
	return nil
}
