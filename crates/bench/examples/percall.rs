use std::time::Instant;
use testrail_client::User;
fn main() {
    let mut s = String::from("[");
    for n in 1..=50_000u64 {
        if n > 1 { s.push(','); }
        s.push_str(&format!(r#"{{"id":{n},"name":"User Number {n}","email":"user{n}@example.com","is_active":true,"role_id":3,"role":"Tester","email_notifications":true,"is_admin":false,"group_ids":[{},{}],"mfa_required":false,"sso_enabled":false}}"#, n%1000+1, n%7+1));
    }
    s.push(']');
    let t = Instant::now();
    let users: Vec<User> = serde_json::from_str(&s).unwrap();
    println!("decode {:?}", t.elapsed());
    let t = Instant::now();
    let mut h = 0u64;
    for u in &users { h = h.wrapping_add(serde_json::to_vec(u).unwrap().len() as u64); }
    println!("fingerprint to_vec {:?} {h}", t.elapsed());
    let t = Instant::now();
    let mut w = accessrail_engine::connector::FieldWarnings::default();
    let accts: Vec<_> = users.iter().map(|u| accessrail_engine::connector::to_account(u, &mut w)).collect();
    println!("to_account {:?}", t.elapsed());
    let t = Instant::now();
    let mut n = 0;
    for a in &accts { n += a.fields.as_str().len(); }
    println!("fields_json {:?} {n}", t.elapsed());
}
