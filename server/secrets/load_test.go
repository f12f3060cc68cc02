package secrets

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // defeat umask
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not meaningful on Windows")
	}
	envKR := mustKeyring(t, mustKey(t, "env", 1))
	fileKR := mustKeyring(t, mustKey(t, "file", 2), mustKey(t, "older", 3))
	dir := t.TempDir()
	goodFile := filepath.Join(dir, "good.key")
	writeFile(t, goodFile, "# tokend\n"+fileKR.Encode(), 0o600)
	looseFile := filepath.Join(dir, "loose.key")
	writeFile(t, looseFile, fileKR.Encode(), 0o644)
	groupFile := filepath.Join(dir, "group.key")
	writeFile(t, groupFile, fileKR.Encode(), 0o640)
	badFile := filepath.Join(dir, "bad.key")
	writeFile(t, badFile, "x:"+base64.StdEncoding.EncodeToString(keyBytes(4)[:20]), 0o600)
	missing := filepath.Join(dir, "missing.key")
	looseDataDir := t.TempDir()
	writeFile(t, filepath.Join(looseDataDir, DataDirKeyFile), fileKR.Encode(), 0o604)
	existingDataDir := t.TempDir()
	writeFile(t, filepath.Join(existingDataDir, DataDirKeyFile), fileKR.Encode(), 0o400)

	tests := []struct {
		name            string
		env, file, data string
		wantIDs         []string
		wantSource      string
		wantErr         []string // substrings of the error
		notInErr        []string
	}{
		{name: "env wins", env: envKR.Encode(), file: missing, data: looseDataDir, wantIDs: []string{"env"}, wantSource: "env TOKEND_MASTER_KEY"},
		{name: "bad env", env: "short:AAAA", file: goodFile, wantErr: []string{"TOKEND_MASTER_KEY", "master key 1: decodes to 3 bytes"}, notInErr: []string{"short:AAAA"}},
		{name: "file", file: goodFile, data: looseDataDir, wantIDs: []string{"file", "older"}, wantSource: "file " + goodFile},
		{name: "missing file", file: missing, data: existingDataDir, wantErr: []string{missing, "no such file"}},
		{name: "0644 file", file: looseFile, wantErr: []string{looseFile, "0644"}},
		{name: "0640 file", file: groupFile, wantErr: []string{groupFile, "0640"}},
		{name: "directory as file", file: dir, wantErr: []string{dir, "not a regular file"}},
		{name: "bad file", file: badFile, wantErr: []string{badFile, "master key 1: decodes to 20 bytes"}, notInErr: []string{base64.StdEncoding.EncodeToString(keyBytes(4)[:20])}},
		{name: "existing data dir key", data: existingDataDir, wantIDs: []string{"file", "older"}, wantSource: "file " + filepath.Join(existingDataDir, DataDirKeyFile)},
		{name: "loose data dir key", data: looseDataDir, wantErr: []string{filepath.Join(looseDataDir, DataDirKeyFile), "0604"}},
		{name: "nothing", wantErr: []string{"no master key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, source, created, err := Load(tt.env, tt.file, tt.data)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Load = %v, %q; want error", kr, source)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				for _, s := range append(tt.notInErr, fileKR.Encode(), envKR.Encode()) {
					if strings.Contains(err.Error(), strings.TrimSpace(s)) {
						t.Errorf("error %q contains input %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if created {
				t.Error("created = true, want false")
			}
			if source != tt.wantSource {
				t.Errorf("source = %q, want %q", source, tt.wantSource)
			}
			if diff := cmp.Diff(tt.wantIDs, kr.IDs()); diff != "" {
				t.Errorf("IDs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadCreatesDataDirKey(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not meaningful on Windows")
	}
	dataDir := filepath.Join(t.TempDir(), "data") // does not exist yet
	path := filepath.Join(dataDir, DataDirKeyFile)

	kr1, source, created, err := Load("", "", dataDir)
	if err != nil {
		t.Fatalf("first Load: %v", err)
	}
	if !created {
		t.Error("first Load: created = false, want true")
	}
	if want := "file " + path; source != want {
		t.Errorf("source = %q, want %q", source, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %#o, want 0600", perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != kr1.Encode() {
		t.Error("key file content differs from the returned keyring")
	}

	kr2, source2, created2, err := Load("", "", dataDir)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if created2 {
		t.Error("second Load: created = true, want false")
	}
	if source2 != source {
		t.Errorf("second source = %q, want %q", source2, source)
	}
	if diff := cmp.Diff(kr1.IDs(), kr2.IDs()); diff != "" {
		t.Errorf("second Load IDs (-first +second):\n%s", diff)
	}
	if kr1.Encode() != kr2.Encode() {
		t.Error("second Load has different key material")
	}
	sealed, id, err := kr1.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr2.Open(sealed, id, nil); err != nil {
		t.Errorf("second keyring cannot open first's ciphertext: %v", err)
	}
}

func TestCreateKeyFileExclusive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DataDirKeyFile)
	writeFile(t, path, "keep me", 0o600)
	if _, err := createKeyFile(dir, path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("createKeyFile over an existing file: err = %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "keep me" {
		t.Errorf("existing file overwritten: %q", data)
	}
}
