// Package schema checks the Kubernetes manifests of deploy/kubernetes
// against the Kubernetes API types with a strict decode: an unknown or
// misspelt field, a duplicate key or a value of the wrong type is an
// error, as `kubectl apply --validate=strict` would make it. It is its own
// module so that tokend's go.mod does not carry k8s.io/api; `make
// k8s-check` (part of `make test`) runs it.
package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const dir = ".."

// kustomization is the part of kustomize's Kustomization the manifests
// use (kustomize's own types module would bring much more than this
// test needs); unknown fields are errors all the same.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

// typeOf returns an empty object of the Go type of apiVersion and kind.
func typeOf(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// TestManifestsDecodeStrictly decodes every document of every manifest
// into its Kubernetes type, refusing unknown fields.
func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Errorf("%s document %d: %v", f, i+1, err)
				continue
			}
			obj := typeOf(head.APIVersion, head.Kind)
			if obj == nil {
				t.Errorf("%s document %d: %s %s is not a kind this test knows: add it", f, i+1, head.APIVersion, head.Kind)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, head.Kind, err)
				continue
			}
			kinds[head.Kind] = true
		}
	}
	for _, k := range []string{"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Kustomization"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// TestStrictDecodeCatchesMistakes: the decode the manifests pass refuses
// a misspelt field, a field at the wrong level and a wrong type.
func TestStrictDecodeCatchesMistakes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(dir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"misspelt field", "readinessProbe:", "readynessProbe:"},
		{"wrong type", "replicas: 2", "replicas: two"},
		{"unknown top-level field", "kind: Deployment", "kind: Deployment\nstatus2: {}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(b, []byte(tc.old)) {
				t.Fatalf("deployment.yaml has no %q to change", tc.old)
			}
			bad := bytes.Replace(b, []byte(tc.old), []byte(tc.new), 1)
			if err := yaml.UnmarshalStrict(bad, &appsv1.Deployment{}); err == nil {
				t.Errorf("strict decode of deployment.yaml with %s = nil, want an error", tc.name)
			}
		})
	}
}

func stripComments(doc string) string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
