package libvirt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/klab-dev/klab/provision"
)

// CreateNetwork implements provision.Provider: the cluster's SSH key, its
// storage pool with the boot files, one libvirt network per subnet, the
// choice of accelerator, and — with two subnets — the router VM.
func (p *Provider) CreateNetwork(ctx context.Context, c *provision.Cluster) error {
	l, err := connect(ctx, p.Opts.URI)
	if err != nil {
		return err
	}
	defer l.Close()
	st := &state{URI: p.Opts.URI, CloudImage: p.Opts.CloudImage}
	if err := saveState(c.Name, st); err != nil {
		return err
	}
	if _, err := ensureUserKey(c.Name); err != nil {
		return fmt.Errorf("cluster SSH key: %w", err)
	}
	if err := createPool(l, c.Name); err != nil {
		return err
	}
	for i := range c.Subnets {
		if err := createNetwork(l, c, i); err != nil {
			return err
		}
	}
	boot, err := p.prepareBoot(ctx, l, c, st)
	if err != nil {
		return err
	}
	if err := p.chooseAccel(ctx, l, c, st, boot); err != nil {
		return err
	}
	if err := saveState(c.Name, st); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if n.Role != provision.RoleRouter {
			continue
		}
		if err := p.createMachine(ctx, l, c, st, boot, n); err != nil {
			return err
		}
		if err := p.waitBoot(ctx, l, c, st, n); err != nil {
			return err
		}
	}
	return nil
}

// createPool defines, builds and starts the cluster's storage pool.
func createPool(l *conn, cluster string) error {
	x, err := poolXML(cluster)
	if err != nil {
		return err
	}
	pool, err := l.StoragePoolDefineXML(string(x), 0)
	if err != nil {
		return fmt.Errorf("define storage pool %s: %s", PoolName(cluster), oneLine(err))
	}
	if err := l.StoragePoolBuild(pool, golibvirt.StoragePoolBuildNew); err != nil {
		return fmt.Errorf("build storage pool %s: %s", PoolName(cluster), oneLine(err))
	}
	if err := l.StoragePoolCreate(pool, 0); err != nil {
		return fmt.Errorf("start storage pool %s: %s", PoolName(cluster), oneLine(err))
	}
	return nil
}

// createNetwork defines and starts the libvirt network of subnet i.
func createNetwork(l *conn, c *provision.Cluster, i int) error {
	x, err := networkXML(c, i)
	if err != nil {
		return err
	}
	name := NetworkName(c.Name, c.Subnets[i])
	n, err := l.NetworkDefineXML(string(x))
	if err != nil {
		return fmt.Errorf("define network %s: %s", name, oneLine(err))
	}
	if err := l.NetworkCreate(n); err != nil {
		return fmt.Errorf("start network %s (bridge %s, %s): %s", name, BridgeName(c, i), c.Subnets[i].CIDR, oneLine(err))
	}
	return nil
}

// upload makes a volume in the cluster's pool with the contents of r
// (size bytes) and returns its path on the libvirt host.
func upload(l *conn, cluster, name, format string, r io.Reader, size int64) (string, error) {
	pool, err := l.StoragePoolLookupByName(PoolName(cluster))
	if err != nil {
		return "", fmt.Errorf("storage pool %s: %w", PoolName(cluster), err)
	}
	x, err := volumeXML(volumeData{Name: name, Capacity: size, Format: format})
	if err != nil {
		return "", err
	}
	if err := removeVolume(l, pool, name); err != nil {
		return "", err
	}
	vol, err := l.StorageVolCreateXML(pool, string(x), 0)
	if err != nil {
		return "", fmt.Errorf("create volume %s: %s", name, oneLine(err))
	}
	if err := l.StorageVolUpload(vol, r, 0, uint64(size), 0); err != nil {
		return "", fmt.Errorf("upload volume %s: %s", name, oneLine(err))
	}
	return l.StorageVolGetPath(vol)
}

// uploadBytes uploads parts, concatenated, as one volume.
func uploadBytes(l *conn, cluster, name, format string, parts ...[]byte) (string, error) {
	var size int64
	var rs []io.Reader
	for _, p := range parts {
		size += int64(len(p))
		rs = append(rs, bytes.NewReader(p))
	}
	return upload(l, cluster, name, format, io.MultiReader(rs...), size)
}

// uploadFile uploads a local file as a volume.
func uploadFile(l *conn, cluster, name, format, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	return upload(l, cluster, name, format, f, fi.Size())
}

// emptyVolume makes a sparse disk volume, optionally a qcow2 overlay on
// a backing file.
func emptyVolume(l *conn, cluster string, v volumeData) (string, error) {
	pool, err := l.StoragePoolLookupByName(PoolName(cluster))
	if err != nil {
		return "", fmt.Errorf("storage pool %s: %w", PoolName(cluster), err)
	}
	x, err := volumeXML(v)
	if err != nil {
		return "", err
	}
	if err := removeVolume(l, pool, v.Name); err != nil {
		return "", err
	}
	vol, err := l.StorageVolCreateXML(pool, string(x), 0)
	if err != nil {
		return "", fmt.Errorf("create volume %s: %s", v.Name, oneLine(err))
	}
	return l.StorageVolGetPath(vol)
}

// removeVolume deletes a volume left by an earlier attempt, if any.
func removeVolume(l *conn, pool golibvirt.StoragePool, name string) error {
	vol, err := l.StorageVolLookupByName(pool, name)
	if notFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up volume %s: %w", name, err)
	}
	if err := l.StorageVolDelete(vol, golibvirt.StorageVolDeleteNormal); err != nil && !notFound(err) {
		return fmt.Errorf("delete old volume %s: %w", name, err)
	}
	return nil
}
