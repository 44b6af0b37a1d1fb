package config

import (
	"os"
	"testing"
)

// BenchmarkParseExample measures a full load of the example config
// (decode, env expansion, five secret files, validation). Config loading is
// not on the request path; the figure bounds reload cost.
func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		b.Fatal(err)
	}
	env := envMap(map[string]string{"EDGEAUTH_SECRETS_DIR": writeSecrets(b)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "example.yaml", env); err != nil {
			b.Fatal(err)
		}
	}
}
