package storage

import (
	"context"
	"time"
)

// TwilioCredential is an application's provisioning credential: what
// tokend authenticates to Twilio's Keys API with, to create, list and
// delete the application's API keys. Its secret is sealed like a key's.
type TwilioCredential struct {
	// ApplicationSID is the application; the primary key.
	ApplicationSID string
	// Username is the account SID (with an auth token) or the SID of a
	// Main API key (with its secret).
	Username string
	// SealedSecret is the auth token or key secret, sealed (package
	// secrets); never the secret itself.
	SealedSecret []byte
	// MasterKeyID names the master key that sealed SealedSecret.
	MasterKeyID string
	// RotateEvery is how often a new key is provisioned and activated; 0
	// turns scheduled rotation off.
	RotateEvery time.Duration
	// UpdatedAt is set by the store.
	UpdatedAt time.Time
}

// KeyOp is an intent recorded before tokend calls Twilio, so that a crash
// in the middle leaves nothing unknown: the next start finishes or undoes
// every op it finds (see package provision).
type KeyOp struct {
	// ID is unique; a provision op's ID is in the friendly name of the key
	// it creates at Twilio.
	ID string
	// ApplicationSID is the application the op is for.
	ApplicationSID string
	// Op is "provision", "delete" or "revoke".
	Op string
	// APIKeySID is the key deleted or revoked; empty for provision.
	APIKeySID string
	// Activate is whether a provisioned key is to be activated.
	Activate bool
	// CreatedAt is set by the store.
	CreatedAt time.Time
}

// ProvisioningStore keeps what tokend needs to manage API keys at Twilio
// itself: provisioning credentials, recorded intents and leases. None of
// its writes advances the revision (they do not change what a mint signs).
type ProvisioningStore interface {
	// PutTwilioCredential sets the application's provisioning credential,
	// replacing any; ErrNotFound if the application does not exist.
	PutTwilioCredential(ctx context.Context, c TwilioCredential) error
	// GetTwilioCredential returns it, or ErrNotFound.
	GetTwilioCredential(ctx context.Context, applicationSID string) (TwilioCredential, error)
	// ListTwilioCredentials returns every one, ordered by application SID.
	ListTwilioCredentials(ctx context.Context) ([]TwilioCredential, error)
	// DeleteTwilioCredential removes it; ErrNotFound if there is none.
	DeleteTwilioCredential(ctx context.Context, applicationSID string) error

	// PutKeyOp records an intent (or replaces the one with that ID);
	// ErrNotFound if the application does not exist.
	PutKeyOp(ctx context.Context, op KeyOp) error
	// ListKeyOps returns every recorded intent, oldest first.
	ListKeyOps(ctx context.Context) ([]KeyOp, error)
	// DeleteKeyOp removes an intent; removing one that is gone is no
	// error.
	DeleteKeyOp(ctx context.Context, id string) error

	// AcquireLease takes or renews the named lease for holder until ttl
	// from now, and reports whether holder has it: false while another
	// holder's lease has not expired. A holder that dies loses the lease
	// when it expires.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up holder's lease; a lease holder does not have
	// is left alone.
	ReleaseLease(ctx context.Context, name, holder string) error
}
