package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// Every key of the schema must be documented in deploy/CONFIG.md, so the
// reference cannot silently fall behind the structs.
func TestConfigReferenceCoversEveryKey(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../deploy/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	var check func(reflect.Type, string)
	check = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == secretType {
			return
		}
		for _, name := range structFields(typ).names {
			if !strings.Contains(text, name+"`") && !strings.Contains(text, "`"+name) {
				t.Errorf("deploy/CONFIG.md does not document %s", joinPath(path, name))
			}
			check(structFields(typ).types[name], joinPath(path, name))
		}
	}
	check(reflect.TypeFor[Config](), "")
}
