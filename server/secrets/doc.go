// Package secrets keeps Twilio API key secrets encrypted at rest.
//
// Secrets are sealed with AES-256-GCM under a master key from a Keyring.
// The first key of a keyring is the primary: it seals every new secret.
// The other keys can only open, which lets an operator rotate the master
// key (Keyring.WithPrimary) and re-seal stored secrets at leisure.
//
// Every sealed value is stored with the ID of the master key that sealed it
// and is bound, through AES-GCM associated data (AssociatedData), to the row
// it belongs to, so a ciphertext copied to another row does not open.
//
// Key material never leaves this package by accident: MasterKey and
// Keyring print (fmt, slog) only key IDs, and no error message contains
// key bytes or their encoding. Only MasterKey.Encode and Keyring.Encode
// reveal key material, for writing a key file.
//
// Load finds the keyring at start-up, from the TOKEND_MASTER_KEY
// environment variable, a key file, or a key generated on first run in the
// data directory.
package secrets
