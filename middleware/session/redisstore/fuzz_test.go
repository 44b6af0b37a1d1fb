package redisstore

import (
	"testing"
	"time"
)

func FuzzDecodeRevocation(f *testing.F) {
	f.Add([]byte(`{"v":1,"ids":["abc"],"iss":"https://idp","sub":"alice","o":"x"}`))
	f.Add([]byte(`{"v":1,"iss":"https://idp","sub":"alice","at":1700000000000000000}`))
	f.Add([]byte(`{"v":2,"ids":["abc"]}`))
	f.Add([]byte(`{"v":1,"at":-1}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRevocation(b)
		if err != nil {
			return
		}
		if r.V != revocationVersion || r.At < 0 || (len(r.IDs) == 0 && r.At == 0) {
			t.Fatalf("accepted invalid message %+v", r)
		}
		// What we accept survives our own encoding.
		r2, err := decodeRevocation(r.encode())
		if err != nil || len(r2.IDs) != len(r.IDs) || r2.At != r.At || r2.Sub != r.Sub {
			t.Fatalf("re-decode = %+v, %v; want %+v", r2, err, r)
		}
	})
}

func FuzzDecodeBlob(f *testing.F) {
	f.Add(encodeBlob([]byte("history"), time.Unix(1700000000, 5)))
	f.Add([]byte{})
	f.Add([]byte{blobVersion, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		b, exp, ok := decodeBlob(v)
		if !ok {
			return
		}
		if got := encodeBlob(b, exp); string(got) != string(v) {
			t.Fatalf("encode(decode(v)) = %x, want %x", got, v)
		}
	})
}
