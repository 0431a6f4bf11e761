//! [`Pki`]: a lab's certificates for etcd with `--client-cert-auth`, made with `openssl`
//! in a directory of the test (removed with it): a CA, one server certificate for
//! etcd's client URLs (its SANs: the addresses they listen on) and client certificates
//! whose CN is the etcd user, as `warden fleet init` names them (`root`,
//! `warden-controller`, `warden-node-<node>`). Keys are P-256, valid one day.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Context as _, Result};

/// `openssl req`'s arguments for a new unencrypted P-256 key.
const NEW_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// The lab's CA and the certificates made with it, all under one directory.
pub struct Pki {
    dir: PathBuf,
}

/// A client certificate's files (PEM), as `daemon.fleet.tls` takes them.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientFiles {
    /// `daemon.fleet.tls` as a YAML flow mapping: `{ca: ..., cert: ..., key: ...}`.
    pub fn yaml(&self) -> String {
        format!(
            "{{ca: {}, cert: {}, key: {}}}",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    /// `etcdctl`'s flags for this certificate.
    pub fn etcdctl_flags(&self) -> [String; 3] {
        [
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.cert.display()),
            format!("--key={}", self.key.display()),
        ]
    }
}

impl Pki {
    /// A CA and etcd's server certificate (`server.pem`, `server.key`) for `server_ips`,
    /// in `dir` (created).
    pub fn new(dir: &Path, server_ips: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        pki.openssl(
            &[
                &["req", "-x509"],
                NEW_KEY,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1"],
                &["-subj", "/CN=warden-lab-ca"],
            ]
            .concat(),
        )?;
        let sans: Vec<String> = server_ips.iter().map(|ip| format!("IP:{ip}")).collect();
        pki.sign(
            "server",
            "etcd",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                sans.join(",")
            ),
        )?;
        Ok(pki)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// etcd's server certificate and key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("server.pem"), self.dir.join("server.key"))
    }

    /// A client certificate with CN `cn` (made on first use).
    pub fn client(&self, cn: &str) -> Result<ClientFiles> {
        ensure!(
            !cn.is_empty() && cn.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "certificate name {cn:?}"
        );
        let name = format!("client-{cn}");
        let files = ClientFiles {
            ca: self.ca(),
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        if !files.cert.exists() {
            self.sign(&name, cn, "extendedKeyUsage=clientAuth\n")?;
        }
        Ok(files)
    }

    /// `NAME.key` and `NAME.pem` for `cn`, signed by the CA with extensions `ext`.
    fn sign(&self, name: &str, cn: &str, ext: &str) -> Result<()> {
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.join(&extfile), ext)?;
        let subject = format!("/CN={cn}");
        self.openssl(
            &[
                &["req"],
                NEW_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        )?;
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &extfile,
        ])
    }

    fn openssl(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}
