package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The Kubernetes manifests in deploy/kubernetes are checked here, as that
// directory is no Go package: every file parses, every document is a
// Kubernetes object, and the Deployment, ConfigMap and Secret agree with
// tokend and with each other.

const manifestDir = "../../deploy/kubernetes"

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec  yaml.Node         `yaml:"spec"`
	Data  map[string]string `yaml:"data"`
	SData map[string]string `yaml:"stringData"`
	// Kustomization
	Resources []string `yaml:"resources"`

	file string
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Template struct {
		Spec struct {
			SecurityContext struct {
				RunAsNonRoot bool `yaml:"runAsNonRoot"`
			} `yaml:"securityContext"`
			Containers []struct {
				Name  string   `yaml:"name"`
				Args  []string `yaml:"args"`
				Ports []struct {
					Name          string `yaml:"name"`
					ContainerPort int    `yaml:"containerPort"`
				} `yaml:"ports"`
				Env []struct {
					Name      string `yaml:"name"`
					Value     string `yaml:"value"`
					ValueFrom struct {
						SecretKeyRef struct {
							Name string `yaml:"name"`
							Key  string `yaml:"key"`
						} `yaml:"secretKeyRef"`
					} `yaml:"valueFrom"`
				} `yaml:"env"`
				ReadinessProbe  *probe `yaml:"readinessProbe"`
				LivenessProbe   *probe `yaml:"livenessProbe"`
				SecurityContext struct {
					RunAsNonRoot             bool  `yaml:"runAsNonRoot"`
					ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
					AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
					Capabilities             struct {
						Drop []string `yaml:"drop"`
					} `yaml:"capabilities"`
				} `yaml:"securityContext"`
				Resources struct {
					Requests map[string]string `yaml:"requests"`
					Limits   map[string]string `yaml:"limits"`
				} `yaml:"resources"`
				VolumeMounts []struct {
					Name      string `yaml:"name"`
					MountPath string `yaml:"mountPath"`
				} `yaml:"volumeMounts"`
			} `yaml:"containers"`
			Volumes []struct {
				Name      string    `yaml:"name"`
				EmptyDir  *struct{} `yaml:"emptyDir"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d manifests in %s, want the Deployment, Service, ConfigMap, PDB and example Secret", len(files), manifestDir)
	}
	var objs []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 1; ; i++ {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if o.APIVersion == "" || o.Kind == "" {
				t.Errorf("%s document %d: no apiVersion or kind", f, i)
			}
			if o.Metadata.Namespace != "" {
				t.Errorf("%s document %d: names namespace %q; the manifests must be namespace-agnostic", f, i, o.Metadata.Namespace)
			}
			o.file = filepath.Base(f)
			objs = append(objs, o)
		}
	}
	return objs
}

func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Secret", "Kustomization"} {
		if len(byKind[kind]) != 1 {
			t.Fatalf("%d objects of kind %s, want 1", len(byKind[kind]), kind)
		}
	}

	var d deploymentSpec
	if err := byKind["Deployment"][0].Spec.Decode(&d); err != nil {
		t.Fatalf("Deployment spec: %v", err)
	}
	if d.Replicas < 2 {
		t.Errorf("Deployment replicas = %d, want 2 or more", d.Replicas)
	}
	pod := d.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	for _, p := range []struct {
		name string
		pr   *probe
		path string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.pr == nil || p.pr.HTTPGet.Path != p.path || (p.pr.HTTPGet.Port != 8080 && p.pr.HTTPGet.Port != "http") {
			t.Errorf("%s = %+v, want httpGet %s on port 8080", p.name, p.pr, p.path)
		}
	}
	sc := c.SecurityContext
	if !pod.SecurityContext.RunAsNonRoot || !sc.RunAsNonRoot || !sc.ReadOnlyRootFilesystem || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext = %+v, want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources = %+v, want memory requests and limits", c.Resources)
	}

	// The environment: the settings the brief asks for, secrets from the
	// Secret, and no TOKEND_ variable tokend does not know.
	o, err := parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	knownEnv := map[string]bool{"TOKEND_MASTER_KEY": true, "TOKEND_ADMIN_TOKEN": true, "TOKEND_CONFIG": true}
	for _, s := range o.settings {
		knownEnv[s.env] = true
	}
	env := map[string]string{}
	secretRefs := map[string]string{}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "TOKEND_") && !knownEnv[e.Name] {
			t.Errorf("Deployment sets %s, which tokend does not read", e.Name)
		}
		env[e.Name] = e.Value
		if r := e.ValueFrom.SecretKeyRef; r.Name != "" {
			secretRefs[e.Name] = r.Name + "/" + r.Key
		}
	}
	for name, want := range map[string]string{
		"TOKEND_HTTP_ADDR": "0.0.0.0:8080", "TOKEND_GRPC_ADDR": "0.0.0.0:9090",
		"TOKEND_LOG_FORMAT": "json", "TOKEND_DATA_DIR": "/data",
	} {
		if env[name] != want {
			t.Errorf("Deployment env %s = %q, want %q", name, env[name], want)
		}
	}
	secret := byKind["Secret"][0]
	for _, name := range []string{"TOKEND_STORE", "TOKEND_MASTER_KEY", "TOKEND_ADMIN_TOKEN"} {
		ref := secretRefs[name]
		if ref == "" {
			t.Errorf("Deployment env %s does not come from a Secret", name)
			continue
		}
		sname, key, _ := strings.Cut(ref, "/")
		if sname != secret.Metadata.Name || secret.SData[key] == "" {
			t.Errorf("Deployment env %s comes from %s, which %s does not show", name, ref, secret.file)
		}
	}

	// Volumes: /data an emptyDir, the ConfigMap mounted where --config
	// points, holding a config file tokend accepts.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var configMapVolume string
	dataEmptyDir := false
	for _, v := range pod.Volumes {
		switch {
		case v.EmptyDir != nil && mounts[v.Name] == "/data":
			dataEmptyDir = true
		case v.ConfigMap != nil:
			configMapVolume = v.Name
			if v.ConfigMap.Name != byKind["ConfigMap"][0].Metadata.Name {
				t.Errorf("volume %s mounts ConfigMap %q, want %q", v.Name, v.ConfigMap.Name, byKind["ConfigMap"][0].Metadata.Name)
			}
		}
	}
	if !dataEmptyDir {
		t.Error("no emptyDir volume mounted at /data")
	}
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container args %q do not name --config", c.Args)
	}
	configPath := c.Args[i+1]
	dir, base := filepath.Split(configPath)
	if configMapVolume == "" || filepath.Clean(dir) != mounts[configMapVolume] {
		t.Errorf("--config %s is not in the ConfigMap's mount (%s at %q)", configPath, configMapVolume, mounts[configMapVolume])
	}
	text, ok := byKind["ConfigMap"][0].Data[base]
	if !ok {
		t.Fatalf("ConfigMap has no key %s", base)
	}
	cfg := filepath.Join(t.TempDir(), base)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parse([]string{"--config", cfg}, envOf(nil), &bytes.Buffer{}); err != nil {
		t.Errorf("ConfigMap's %s is not a valid tokend config: %v", base, err)
	}

	// The Service's ports lead to the container's.
	var svc struct {
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	if err := byKind["Service"][0].Spec.Decode(&svc); err != nil {
		t.Fatal(err)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	got := map[string]int{}
	for _, p := range svc.Ports {
		got[p.Name] = p.Port
		if name, ok := p.TargetPort.(string); ok && ports[name] == 0 {
			t.Errorf("Service port %s targets %q, which the container does not name", p.Name, name)
		}
	}
	if got["http"] != 8080 || got["grpc"] != 9090 || ports["http"] != 8080 || ports["grpc"] != 9090 {
		t.Errorf("Service ports %v, container ports %v; want http 8080, grpc 9090", got, ports)
	}

	var pdb struct {
		MinAvailable int `yaml:"minAvailable"`
	}
	if err := byKind["PodDisruptionBudget"][0].Spec.Decode(&pdb); err != nil || pdb.MinAvailable != 1 {
		t.Errorf("PodDisruptionBudget minAvailable = %d (%v), want 1", pdb.MinAvailable, err)
	}

	// kubectl apply -k applies every manifest but the example Secret.
	res := byKind["Kustomization"][0].Resources
	for _, o := range objs {
		listed := slices.Contains(res, o.file)
		switch {
		case o.Kind == "Kustomization":
		case o.file == "secret.example.yaml" && listed:
			t.Error("kustomization.yaml lists secret.example.yaml: applying it would overwrite the real Secret")
		case o.file != "secret.example.yaml" && !listed:
			t.Errorf("kustomization.yaml does not list %s", o.file)
		}
	}
}

// TestDockerfile: every base image is a fully qualified reference pinned
// by digest (daemonless builders refuse short names), and the file uses
// nothing buildah cannot build (a syntax directive that fetches a
// frontend image, heredocs).
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms int
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		if strings.HasPrefix(strings.ToLower(line), "# syntax=") {
			t.Errorf("Dockerfile:%d: a syntax directive (buildah ignores it, Docker pulls a frontend image by short name)", n)
		}
		if strings.Contains(line, "<<") {
			t.Errorf("Dockerfile:%d: a heredoc (not every builder supports them): %s", n, line)
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.EqualFold(fields[0], "FROM") {
			continue
		}
		froms++
		var ref string
		for _, f := range fields[1:] {
			if !strings.HasPrefix(f, "--") {
				ref = f
				break
			}
		}
		name, digest, ok := strings.Cut(ref, "@sha256:")
		if !ok || len(digest) != 64 || strings.Trim(digest, "0123456789abcdef") != "" {
			t.Errorf("Dockerfile:%d: %s is not pinned by a sha256 digest", n, ref)
		}
		host, path, hasHost := strings.Cut(name, "/")
		if !hasHost || !strings.ContainsAny(host, ".:") || !strings.Contains(path, ":") {
			t.Errorf("Dockerfile:%d: %s is not a fully qualified reference (registry host/path:tag)", n, name)
		}
	}
	if froms != 2 {
		t.Errorf("Dockerfile has %d FROM lines, want 2 (build, runtime)", froms)
	}
}
