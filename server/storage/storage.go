// Package storage defines how tokend keeps applications and their signing
// keys, independent of the backend. Backends live in subpackages (sqlite,
// postgres) and all pass the shared suite in storage/storagetest.
//
// The store never sees a secret in the clear: keys carry their secret
// sealed by package secrets, with the ID of the master key that sealed it.
package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors returned by every backend, wrapped with context. Test
// with errors.Is.
var (
	// ErrNotFound: the application, key or credential does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an application or key with that SID exists, or a
	// credential with that name or hash.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the write contradicts the current state (for example,
	// deleting the active key).
	ErrConflict = errors.New("conflict")
)

// KeyState is the state of a signing key.
type KeyState string

// Key states. Exactly one key of an application that has keys may be
// active; all others are retired (or were never activated).
const (
	KeyActive  KeyState = "active"
	KeyRetired KeyState = "retired"
)

// Application is a TwiML application tokend mints tokens for.
type Application struct {
	// SID is the TwiML application SID (AP + 32 hex); the primary key.
	SID string
	// AccountSID owns the application and its API keys (AC + 32 hex).
	AccountSID string
	// FriendlyName is a human label.
	FriendlyName string
	// DefaultGrants is the protojson encoding of a token.v1.Grants message
	// used when a mint request carries no grants; empty means the built-in
	// default (outgoing voice through this application).
	DefaultGrants []byte
	// MaxTTLSeconds caps the lifetime of tokens for this application; 0
	// means the global maximum (86400).
	MaxTTLSeconds int32
	// Region is the default home region (the token's twr header); empty
	// for none.
	Region string
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Key is an API key that signs tokens for one application. The same API
// key SID may serve several applications of one account; the primary key
// is (ApplicationSID, SID).
type Key struct {
	// ApplicationSID is the application the key belongs to.
	ApplicationSID string
	// SID is the API key SID (SK + 32 hex), the token's iss claim.
	SID string
	// SealedSecret is the API key secret sealed with AEAD (package
	// secrets); never the secret itself.
	SealedSecret []byte
	// MasterKeyID names the master key that sealed SealedSecret.
	MasterKeyID string
	// State is active or retired.
	State KeyState
	// CreatedAt is set by the store when the key is created.
	CreatedAt time.Time
	// ActivatedAt is when the key last became active (zero if never).
	ActivatedAt time.Time
	// LastSignedAt is when the key last signed a token, as last recorded.
	LastSignedAt time.Time
	// OutstandingUntil is the latest exp of any token the key signed, as
	// last recorded: after it, the API key can be deleted at Twilio.
	OutstandingUntil time.Time
}

// Sealed is a key's secret sealed again under another master key (see
// Store.ResealKeys).
type Sealed struct {
	ApplicationSID string
	SID            string
	SealedSecret   []byte
	MasterKeyID    string
}

// KeyUsage reports signing activity of a key (see Store.RecordKeyUsage).
type KeyUsage struct {
	ApplicationSID   string
	SID              string
	LastSignedAt     time.Time
	OutstandingUntil time.Time
}

// CredentialHashSize is the length of Credential.Hash: a SHA-256 digest.
const CredentialHashSize = 32

// Credential is a named bearer API credential. The store keeps only the
// SHA-256 of the bearer token, never the token itself.
type Credential struct {
	// Name identifies the credential; the primary key. It must not be
	// empty and, like every string of a credential, must be valid UTF-8
	// without NUL bytes.
	Name string
	// Hash is the SHA-256 of the bearer token (CredentialHashSize bytes).
	// No two credentials have the same hash.
	Hash []byte
	// Groups are the groups the credential belongs to, kept in the order
	// given, duplicates included. Empty (nil or not) reads back as nil.
	Groups []string
	// CreatedAt is set by the store.
	CreatedAt time.Time
}

// Validate reports whether every backend can store c as it is: a name that
// is not empty, a name and groups of valid UTF-8 without NUL bytes, and a
// hash of CredentialHashSize bytes. The error names the field, never the
// hash; it is none of the sentinel errors.
func (c Credential) Validate() error {
	if c.Name == "" {
		return errors.New("credential: empty name")
	}
	if !validText(c.Name) {
		return fmt.Errorf("credential %q: name is not valid UTF-8 without NUL", c.Name)
	}
	if len(c.Hash) != CredentialHashSize {
		return fmt.Errorf("credential %s: hash is %d bytes, want %d (SHA-256)", c.Name, len(c.Hash), CredentialHashSize)
	}
	for i, g := range c.Groups {
		if !validText(g) {
			return fmt.Errorf("credential %s: group %d is not valid UTF-8 without NUL", c.Name, i)
		}
	}
	return nil
}

// validText reports whether s can be stored in a text column of every
// backend (PostgreSQL refuses NUL and invalid UTF-8).
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// MaxReplicaIDLength bounds the replica IDs of Store.Heartbeat, in bytes.
const MaxReplicaIDLength = 128

// ReplicaRetention is how long after its expiry a replica's heartbeat row
// is kept before Store.Heartbeat deletes it.
const ReplicaRetention = time.Minute

// ValidateReplica reports whether Store.Heartbeat accepts id and ttl: an
// id of 1 to MaxReplicaIDLength bytes of valid UTF-8 without NUL, and a
// ttl of at least a millisecond. The error names the field and the rule;
// it is none of the sentinel errors.
func ValidateReplica(id string, ttl time.Duration) error {
	if id == "" || len(id) > MaxReplicaIDLength || !validText(id) {
		return fmt.Errorf("replica id: want 1 to %d bytes of valid UTF-8 without NUL", MaxReplicaIDLength)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("replica %s: ttl %v is less than a millisecond", id, ttl)
	}
	return nil
}

// Snapshot is the whole content of a store at one revision, read in one
// consistent transaction.
type Snapshot struct {
	Applications []Application
	Keys         []Key
	// Credentials are ordered by name.
	Credentials []Credential
	// DefaultApplication is the SID of the default application (see
	// Store.SetDefaultApplication); empty when none is set.
	DefaultApplication string
	// Revision is the store's revision when the snapshot was read.
	Revision int64
}

// Store keeps applications, keys and bearer API credentials. Every write is
// durable when it returns nil and is atomic: it happens whole or not at
// all. Every write that changes what a mint would sign, or who may call
// tokend (credential writes), advances the revision, so that replicas
// reload. All methods are safe for concurrent use.
type Store interface {
	// CreateApplication adds an application; ErrAlreadyExists if its SID
	// is taken. CreatedAt and UpdatedAt are set by the store.
	CreateApplication(ctx context.Context, app Application) error
	// GetApplication returns one application or ErrNotFound.
	GetApplication(ctx context.Context, sid string) (Application, error)
	// ListApplications returns all applications ordered by SID.
	ListApplications(ctx context.Context) ([]Application, error)
	// UpdateApplication reads the application, calls update with it and
	// writes back what update returns, in one transaction (SID and
	// CreatedAt cannot change). ErrNotFound if it does not exist; an error
	// from update aborts the write and is returned.
	UpdateApplication(ctx context.Context, sid string, update func(Application) (Application, error)) (Application, error)
	// DeleteApplication removes an application and all its keys, and
	// unsets the default application if it was this one; ErrNotFound if
	// it does not exist.
	DeleteApplication(ctx context.Context, sid string) error
	// DefaultApplication returns the SID of the application that serves
	// mint requests naming none, shared by every replica; "" when none is
	// set.
	DefaultApplication(ctx context.Context) (string, error)
	// SetDefaultApplication makes the application sid the default;
	// ErrNotFound if it does not exist. An empty sid unsets the default.
	// Setting the current value writes nothing (the revision stays);
	// a change advances the revision.
	SetDefaultApplication(ctx context.Context, sid string) error

	// CreateKey adds a key to an existing application: ErrNotFound if the
	// application does not exist, ErrAlreadyExists if the application
	// already has a key with that SID. If the key's State is active, the
	// application's previous active key is retired in the same
	// transaction and ActivatedAt is set.
	CreateKey(ctx context.Context, key Key) error
	// GetKey returns one key or ErrNotFound.
	GetKey(ctx context.Context, applicationSID, sid string) (Key, error)
	// ListKeys returns the keys of an application ordered by CreatedAt,
	// then SID; ErrNotFound if the application does not exist.
	ListKeys(ctx context.Context, applicationSID string) ([]Key, error)
	// ActivateKey makes the key the application's only active key,
	// retiring the previous one, atomically; ActivatedAt is set to now.
	// Activating the active key is a no-op. ErrNotFound if the key does
	// not exist.
	ActivateKey(ctx context.Context, applicationSID, sid string) error
	// DeleteKey removes a retired key: ErrNotFound if it does not exist,
	// ErrConflict if it is the active key.
	DeleteKey(ctx context.Context, applicationSID, sid string) error
	// ResealKeys replaces the sealed secrets of the given keys in one
	// transaction (used to re-encrypt under a new master key). Keys that
	// no longer exist are skipped.
	ResealKeys(ctx context.Context, sealed []Sealed) error
	// RecordKeyUsage raises LastSignedAt and OutstandingUntil of the given
	// keys to at least the given times (never lowers them). Keys that no
	// longer exist are skipped. It does not advance the revision.
	RecordKeyUsage(ctx context.Context, usage []KeyUsage) error

	// CreateCredential adds a credential: ErrAlreadyExists if its name is
	// taken or another credential has the same hash (error texts name the
	// credential, never its hash). CreatedAt is set by the store. A
	// credential that fails Credential.Validate is refused with its error
	// (none of the sentinels) and nothing is written.
	CreateCredential(ctx context.Context, cred Credential) error
	// ListCredentials returns all credentials ordered by name (bytewise).
	ListCredentials(ctx context.Context) ([]Credential, error)
	// DeleteCredential removes a credential; ErrNotFound if it does not
	// exist.
	DeleteCredential(ctx context.Context, name string) error

	// Snapshot reads every application, key and credential in one
	// consistent view.
	Snapshot(ctx context.Context) (Snapshot, error)
	// MasterKeyIDs returns how many sealed secrets (key secrets and
	// provisioning credentials) each master key ID sealed (an empty map
	// for a store without keys), without reading the secrets: tokend
	// checks its keyring against it before it writes.
	MasterKeyIDs(ctx context.Context) (map[string]int, error)
	// Revision returns the current revision, a counter that every write
	// (but RecordKeyUsage) advances. Replicas poll it to notice changes.
	Revision(ctx context.Context) (int64, error)
	// Heartbeat records that the replica id is alive until ttl from now,
	// by the store's clock (not the caller's, so that replicas with skewed
	// clocks agree), deletes the rows of replicas expired for longer than
	// ReplicaRetention, and returns how many replicas are alive: those
	// whose heartbeat has not expired, id included (so at least 1). A
	// heartbeat again with the same id extends its expiry, even past
	// expiry. An id or ttl that fails ValidateReplica is refused with its
	// error and nothing is written. It does not advance the revision.
	Heartbeat(ctx context.Context, id string, ttl time.Duration) (live int, err error)
	// RemoveReplica deletes the heartbeat of the replica id (a replica
	// shutting down), so that the others count it out at their next
	// heartbeat; removing a replica that has none is not an error. It
	// does not advance the revision.
	RemoveReplica(ctx context.Context, id string) error
	// AckRevision records that the replica id serves its keys at store
	// revision rev or later: its heartbeat row's revision becomes rev,
	// unless it is higher already (it never goes down). A replica without
	// a row is not an error (its next heartbeat makes the row, and its
	// next acknowledgement fills it in). It does not advance the revision.
	AckRevision(ctx context.Context, id string, rev int64) error
	// ReplicasBehind returns, sorted, the IDs of the live replicas (their
	// heartbeat has not expired, by the store's clock) whose acknowledged
	// revision is below rev: those that may still sign with keys as they
	// were before rev.
	ReplicasBehind(ctx context.Context, rev int64) ([]string, error)
	// ProvisioningStore keeps provisioning credentials, intents and
	// leases (see provisioning.go).
	ProvisioningStore

	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}
