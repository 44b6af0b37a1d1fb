package riskeval

import (
	"bytes"
	"context"
	"testing"
)

// TestTargetsSmall runs 500 users through every rule set that enforces the
// travel rule and asserts the targets: >= 99% of attacks stepped
// up or denied, <= 1% of legitimate requests asked to step up.
func TestTargetsSmall(t *testing.T) {
	geo, err := WriteGeoIP(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var data bytes.Buffer
	legit, attacks, err := Generate(&data, 500, 42)
	if err != nil {
		t.Fatal(err)
	}
	if legit < 10000 || attacks < 5 {
		t.Fatalf("generated %d legit, %d attack events", legit, attacks)
	}
	// Deterministic from the seed.
	var again bytes.Buffer
	if _, _, err := Generate(&again, 500, 42); err != nil || !bytes.Equal(data.Bytes(), again.Bytes()) {
		t.Fatal("generator is not deterministic")
	}
	for _, rs := range RuleSets[:2] {
		rep, err := Evaluate(context.Background(), data.Bytes(), geo, rs)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: attacks %d/%d, legit step-ups %d/%d", rs.Name, rep.AttacksCaught, rep.Attacks, rep.LegitStepUps, rep.LegitRequests)
		if rep.AttackCatchRate() < 0.99 {
			t.Errorf("%s: attack catch rate %.3f < 0.99 (%v)", rs.Name, rep.AttackCatchRate(), rep.ByKind)
		}
		if rep.LegitStepUpRate() > 0.01 {
			t.Errorf("%s: legit step-up rate %.4f > 0.01", rs.Name, rep.LegitStepUpRate())
		}
		if rep.Events != legit+attacks {
			t.Errorf("replayed %d of %d events", rep.Events, legit+attacks)
		}
	}
}
