//! `freshet-crdgen DIR`: writes the CRD YAML generated from the types into DIR
//! (`make crds` points it at charts/freshet/crds).

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "charts/freshet/crds".into());
    std::fs::create_dir_all(&dir)?;
    for (name, yaml) in freshet_crds::crd_files() {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, yaml)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
