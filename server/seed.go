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

// SeedFromEnv reads the seed's variables. Half a set is an error naming
// the missing ones; malformed SIDs are errors naming the variable. The
// secret is never part of an error.
func SeedFromEnv(getenv func(string) string) (Seed, error) {
	s := Seed{
		AccountSID:  strings.TrimSpace(getenv(EnvAccountSID)),
		APIKey:      strings.TrimSpace(getenv(EnvAPIKey)),
		APISecret:   getenv(EnvAPISecret),
		TwiMLAppSID: strings.TrimSpace(getenv(EnvTwiMLAppSID)),
	}
	vars := []struct{ name, value string }{
		{EnvAccountSID, s.AccountSID}, {EnvAPIKey, s.APIKey}, {EnvAPISecret, s.APISecret}, {EnvTwiMLAppSID, s.TwiMLAppSID},
	}
	var missing []string
	for _, v := range vars {
		if v.value == "" {
			missing = append(missing, v.name)
		}
	}
	switch len(missing) {
	case 0:
	case len(vars):
		return Seed{}, nil
	default:
		return Seed{}, fmt.Errorf("seed credentials are incomplete: %s set but %s missing; set all four or none",
			strings.Join(setNames(vars), ", "), strings.Join(missing, ", "))
	}
	var errs []error
	for _, c := range []struct{ name, value, prefix string }{
		{EnvAccountSID, s.AccountSID, "AC"}, {EnvAPIKey, s.APIKey, "SK"}, {EnvTwiMLAppSID, s.TwiMLAppSID, "AP"},
	} {
		if !tokenapi.ValidSID(c.value, c.prefix) {
			errs = append(errs, fmt.Errorf("%s must be %s followed by 32 hex digits", c.name, c.prefix))
		}
	}
	return s, errors.Join(errs...)
}

func setNames(vars []struct{ name, value string }) []string {
	var set []string
	for _, v := range vars {
		if v.value != "" {
			set = append(set, v.name)
		}
	}
	return set
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
// reload it. It returns the application to use by default ("" for none).
func applySeed(ctx context.Context, ks *keystore.Keystore, seed Seed, log *slog.Logger) (string, error) {
	st := ks.Store()
	if seed.IsZero() {
		// The keystore is loaded: no need to read every application again.
		empty := ks.Len() == 0
		if empty {
			if err := ks.EnsureApplication(ctx, storage.Application{
				SID: DemoApplicationSID, AccountSID: DemoAccountSID, FriendlyName: DemoFriendlyName,
			}); err != nil {
				return "", fmt.Errorf("create demo application: %w", err)
			}
			secret := make([]byte, 16)
			rand.Read(secret)
			demoSecret := []byte(hex.EncodeToString(secret))
			if _, err := ks.PutKey(ctx, DemoApplicationSID, DemoAPIKeySID, demoSecret, true); err != nil {
				return "", fmt.Errorf("create demo key: %w", err)
			}
		}
		if empty || ks.Lookup(DemoApplicationSID) != nil {
			log.Warn("serving the demo application with placeholder SIDs and a random secret: its tokens work for trying tokend but Twilio rejects them; set ACCOUNT_SID, API_KEY, API_SECRET and TWIML_APP_SID for real tokens",
				"application_sid", DemoApplicationSID)
		}
		return "", nil
	}

	if err := ks.EnsureApplication(ctx, storage.Application{
		SID: seed.TwiMLAppSID, AccountSID: seed.AccountSID, FriendlyName: "seed application (" + EnvTwiMLAppSID + ")",
	}); err != nil {
		return "", fmt.Errorf("upsert seed application %s: %w", seed.TwiMLAppSID, err)
	}
	// A key new to the store is activated: the operator changed API_KEY to
	// rotate. A known key keeps its state, so a rotation made through the
	// admin API survives a restart with the same environment.
	_, err := st.GetKey(ctx, seed.TwiMLAppSID, seed.APIKey)
	isNew := errors.Is(err, storage.ErrNotFound)
	if err != nil && !isNew {
		return "", fmt.Errorf("read seed key: %w", err)
	}
	if _, err := ks.PutKey(ctx, seed.TwiMLAppSID, seed.APIKey, []byte(seed.APISecret), isNew); err != nil {
		return "", fmt.Errorf("upsert seed key %s: %w", seed.APIKey, err)
	}
	if err := st.DeleteApplication(ctx, DemoApplicationSID); err == nil {
		log.Info("removed the demo application: real credentials are configured", "application_sid", DemoApplicationSID)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", fmt.Errorf("remove demo application: %w", err)
	}
	log.Info("seed credentials applied", "application_sid", seed.TwiMLAppSID, "account_sid", seed.AccountSID, "api_key_sid", seed.APIKey)
	return seed.TwiMLAppSID, nil
}
