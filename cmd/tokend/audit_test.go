package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestAuditOptions: --audit-required defaults by mode, and the audit
// options refuse bad values with an error naming the option.
func TestAuditOptions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		args         []string
		env          map[string]string
		wantRequired bool
		wantErr      string
	}{
		{name: "development_default_off", wantRequired: false},
		{name: "policy_default_on", args: []string{"--policy-file", "p.yaml"}, wantRequired: true},
		{name: "policy_explicit_off", args: []string{"--policy-file", "p.yaml", "--audit-required=false"}, wantRequired: false},
		{name: "development_flag_on", args: []string{"--audit-required"}, wantRequired: true},
		{name: "env_on", env: map[string]string{"TOKEND_AUDIT_REQUIRED": "true"}, wantRequired: true},
		{name: "env_auto_policy", env: map[string]string{"TOKEND_AUDIT_REQUIRED": "auto", "TOKEND_POLICY_FILE": "p.yaml"}, wantRequired: true},
		{name: "policy_audit_off", args: []string{"--policy-file", "p.yaml", "--audit-log", "off"}, wantRequired: false},
		{name: "required_without_log", args: []string{"--audit-required", "--audit-log", "off"}, wantErr: "audit-required: needs an audit log"},
		{name: "env_not_bool", env: map[string]string{"TOKEND_AUDIT_REQUIRED": "yes please"}, wantErr: "TOKEND_AUDIT_REQUIRED"},
		{name: "flag_not_bool", args: []string{"--audit-required=maybe"}, wantErr: "audit-required"},
		{name: "max_bytes_negative", args: []string{"--audit-max-bytes", "-1"}, wantErr: "audit-max-bytes: must not be negative"},
		{name: "max_bytes_tiny", args: []string{"--audit-max-bytes", "100"}, wantErr: "audit-max-bytes: must be 0"},
		{name: "max_bytes_stdout", args: []string{"--audit-max-bytes", "1048576", "--audit-log", "stdout"}, wantErr: "audit-max-bytes: rotates an audit file"},
		{name: "max_files_zero", args: []string{"--audit-max-files", "0"}, wantErr: "audit-max-files: must be between 1 and 100"},
		{name: "max_files_env_bad", env: map[string]string{"TOKEND_AUDIT_MAX_FILES": "ten"}, wantErr: "TOKEND_AUDIT_MAX_FILES"},
		{name: "max_files_env_range", env: map[string]string{"TOKEND_AUDIT_MAX_FILES": "5000"}, wantErr: "audit-max-files: must be between 1 and 100 (from TOKEND_AUDIT_MAX_FILES)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, envOf(tc.env), &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse(%v) = %v; want an error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := auditRequired(o); got != tc.wantRequired {
				t.Errorf("auditRequired = %v; want %v", got, tc.wantRequired)
			}
		})
	}
}
