package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// EnvVar is the environment variable Load's env argument comes from.
const EnvVar = "TOKEND_MASTER_KEY"

// DataDirKeyFile is the name of the key file Load uses in the data directory.
const DataDirKeyFile = "master.key"

// maxKeyFileSize bounds how much of a key file Load reads.
const maxKeyFileSize = 1 << 20

// Load finds the master keyring at start-up:
//
//  1. if env (the value of TOKEND_MASTER_KEY) is non-empty, it is parsed
//     with ParseKeyring;
//  2. else if file is non-empty, that file is read and parsed; a missing
//     file is an error, and so is a file readable or writable by group or
//     others (mode&0o077 != 0);
//  3. else dataDir/master.key is read if it exists (same mode check);
//     otherwise one key is generated and written there with mode 0600,
//     and created is true.
//
// source describes where the keyring came from: "env TOKEND_MASTER_KEY" or
// "file PATH". Errors never contain key material.
func Load(env, file, dataDir string) (kr *Keyring, source string, created bool, err error) {
	switch {
	case env != "":
		kr, err := ParseKeyring(env)
		if err != nil {
			return nil, "", false, fmt.Errorf("%s: %w", EnvVar, err)
		}
		return kr, "env " + EnvVar, false, nil
	case file != "":
		kr, err := readKeyFile(file)
		if err != nil {
			return nil, "", false, err
		}
		return kr, "file " + file, false, nil
	case dataDir == "":
		return nil, "", false, fmt.Errorf("no master key: set %s, a master key file or a data directory", EnvVar)
	}

	path := filepath.Join(dataDir, DataDirKeyFile)
	kr, err = readKeyFile(path)
	if err == nil {
		return kr, "file " + path, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", false, err
	}
	kr, err = createKeyFile(dataDir, path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our read and create.
		kr, err = readKeyFile(path)
		if err != nil {
			return nil, "", false, err
		}
		return kr, "file " + path, false, nil
	}
	if err != nil {
		return nil, "", false, err
	}
	return kr, "file " + path, true, nil
}

// readKeyFile reads and parses a key file, refusing one that group or
// others can access. The mode is checked on the opened file.
func readKeyFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err) // *PathError names the path
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("master key file %s has mode %#o, accessible by group or others; chmod 600 it", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer clear(data)
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("master key file %s is larger than %d bytes", path, maxKeyFileSize)
	}
	kr, err := ParseKeyring(string(data))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return kr, nil
}

// createKeyFile generates a key and writes it to path, which must not
// exist (the error then wraps fs.ErrExist), with mode 0600.
func createKeyFile(dataDir, path string) (*Keyring, error) {
	m, err := GenerateMasterKey()
	if err != nil {
		return nil, err
	}
	kr, err := NewKeyring(m)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	_, err = io.WriteString(f, kr.Encode())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path) // do not leave a truncated key behind
		return nil, fmt.Errorf("write master key file %s: %w", path, err)
	}
	// Make the new directory entry durable too; best effort (not
	// supported everywhere).
	if d, err := os.Open(dataDir); err == nil {
		d.Sync()
		d.Close()
	}
	return kr, nil
}
