package redistest

import (
	"context"
	"testing"
)

func TestStartKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	ctx := context.Background()
	if _, err := s.Do(ctx, nil, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Do(ctx, nil, "GET", "k")
	if err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
	s.Kill()
	if _, err := s.Do(ctx, nil, "PING"); err == nil {
		t.Fatal("PING after Kill succeeded")
	}
	s.Restart()
	got, err = s.Do(ctx, nil, "GET", "k")
	if err != nil || got != "" {
		t.Fatalf("GET after restart = %q, %v; want empty (no persistence)", got, err)
	}
}

func TestPasswordAndACL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := Start(t, Options{Password: "s3cret"})
	if _, err := p.Do(ctx, nil, "GET", "k"); err == nil {
		t.Fatal("GET without AUTH succeeded on a password-protected server")
	}
	if _, err := p.Do(ctx, []string{"s3cret"}, "GET", "k"); err != nil {
		t.Fatalf("GET with AUTH: %v", err)
	}
	a := Start(t, Options{ACLUsers: []string{"user default off", "user app on >pw ~* &* +@all"}})
	if _, err := a.Do(ctx, []string{"app", "wrong"}, "GET", "k"); err == nil {
		t.Fatal("AUTH with a wrong password succeeded")
	}
	if _, err := a.Do(ctx, []string{"app", "pw"}, "GET", "k"); err != nil {
		t.Fatalf("GET as ACL user: %v", err)
	}
}
