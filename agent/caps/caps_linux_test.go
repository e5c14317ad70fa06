package caps

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/agent/internal/watchtest"
)

// TestEffectiveSeesDroppedCapabilities runs this test binary again under setpriv with
// only CAP_NET_ADMIN and checks that Effective sees exactly that.
func TestEffectiveSeesDroppedCapabilities(t *testing.T) {
	if os.Getenv("CAPS_CHILD") == "1" {
		held, err := Effective()
		if err != nil {
			t.Fatal(err)
		}
		for name, ok := range held {
			if ok != (name == NetAdmin) {
				t.Errorf("%s held = %v", name, ok)
			}
		}
		return
	}
	watchtest.RequireRoot(t, "to drop capabilities with setpriv")
	held, err := Effective()
	if err != nil || !held[SysAdmin] || !held[BPF] {
		t.Fatalf("root holds %v (err %v), want every capability", held, err)
	}
	cmd := exec.Command("setpriv", "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin",
		"--reuid=65534", "--regid=65534", "--clear-groups", os.Args[0], "-test.run=^TestEffectiveSeesDroppedCapabilities$", "-test.v")
	cmd.Env = append(os.Environ(), "CAPS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestRequirementsNameKnownCapabilities(t *testing.T) {
	for _, r := range Requirements {
		for _, n := range r.Needs {
			if _, ok := bits[n.Cap]; !ok {
				t.Errorf("%s/%s needs unknown %s", r.Watcher, r.Mode, n.Cap)
			}
		}
		if m := r.Missing(map[string]bool{}); len(m) != len(r.Needs) {
			t.Errorf("Missing with nothing held = %v", m)
		}
	}
	if rel := KernelRelease(); rel == "" || rel == "unknown" {
		t.Errorf("KernelRelease() = %q", rel)
	}
}
