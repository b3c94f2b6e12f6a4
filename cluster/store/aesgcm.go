package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Transformer encrypts values on their way into etcd and decrypts them on
// the way out. key is the etcd key, bound to the ciphertext so a value
// cannot be moved to another key.
type Transformer interface {
	Encrypt(key string, plain []byte) ([]byte, error)
	Decrypt(key string, stored []byte) ([]byte, error)
}

// aesgcmPrefix marks an encrypted value, as the Kubernetes API server's
// aesgcm provider does ("k8s:enc:aesgcm:v1:" and the key's name).
const aesgcmPrefix = "k8s:enc:aesgcm:v1:klab:"

// KeySize is the size of an AES-256 key.
const KeySize = 32

type aesgcm struct{ aead cipher.AEAD }

// NewAESGCM returns a transformer that encrypts with AES-256-GCM, a
// random nonce per write. Values without its prefix (written before
// encryption was on) are read as they are.
func NewAESGCM(key []byte) (Transformer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("encryption key: %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &aesgcm{aead}, nil
}

func (t *aesgcm) Encrypt(key string, plain []byte) ([]byte, error) {
	out := make([]byte, len(aesgcmPrefix)+t.aead.NonceSize(), len(aesgcmPrefix)+t.aead.NonceSize()+len(plain)+t.aead.Overhead())
	copy(out, aesgcmPrefix)
	nonce := out[len(aesgcmPrefix):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return t.aead.Seal(out, nonce, plain, []byte(key)), nil
}

func (t *aesgcm) Decrypt(key string, stored []byte) ([]byte, error) {
	if !bytes.HasPrefix(stored, []byte(aesgcmPrefix)) {
		return stored, nil
	}
	data := stored[len(aesgcmPrefix):]
	if len(data) < t.aead.NonceSize() {
		return nil, errors.New("encrypted value too short")
	}
	plain, err := t.aead.Open(nil, data[:t.aead.NonceSize()], data[t.aead.NonceSize():], []byte(key))
	if err != nil {
		return nil, errors.New("cannot decrypt: the encryption key is not the one the value was written with")
	}
	return plain, nil
}

// IsEncrypted reports whether a stored value is AES-GCM ciphertext.
func IsEncrypted(stored []byte) bool { return bytes.HasPrefix(stored, []byte(aesgcmPrefix)) }

// GenerateKey returns a new random key in the key file format: base64 and
// a newline.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
}

// LoadKey reads a key file that GenerateKey made.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read encryption key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("encryption key %s: want %d random bytes in base64", path, KeySize)
	}
	return key, nil
}
