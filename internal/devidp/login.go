package devidp

import (
	"context"
	"crypto/subtle"
	"html/template"
	"net/http"
)

// login serves the login page the op package sends the browser to
// (Client.LoginURL) and, on success, hands the request back to the op's
// authorize callback, which issues the code.
type login struct {
	store    *storage
	callback func(context.Context, string) string
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>Sign in — edgeauth development provider</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.6rem 0}input{width:100%;padding:.3rem}p.err{color:#b00}</style></head>
<body><h1>Sign in</h1><p>Development provider — not for production.</p>
{{if .Error}}<p class="err" id="error">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label>Username <input name="username" id="username" autocomplete="username" autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label>
{{if .MFA}}<label>MFA code <input name="mfa" id="mfa" inputmode="numeric" autocomplete="one-time-code"></label>{{end}}
<button type="submit" id="submit">Sign in</button>
</form></body></html>
`))

type loginData struct {
	ID    string
	Error string
	MFA   bool
}

func (l *login) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get("id")
		req, ok := l.store.request(id)
		if !ok {
			http.Error(w, errUnknownRequest.Error(), http.StatusBadRequest)
			return
		}
		l.render(w, http.StatusOK, loginData{ID: id, MFA: req.wantsMFA()})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		id := r.PostFormValue("id")
		req, ok := l.store.request(id)
		if !ok {
			http.Error(w, errUnknownRequest.Error(), http.StatusBadRequest)
			return
		}
		err := l.store.checkLogin(id, r.PostFormValue("username"), r.PostFormValue("password"), r.PostFormValue("mfa"))
		if err != nil {
			l.render(w, http.StatusUnauthorized, loginData{ID: id, Error: err.Error(), MFA: req.wantsMFA()})
			return
		}
		http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (l *login) render(w http.ResponseWriter, status int, d loginData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, d)
}

func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
