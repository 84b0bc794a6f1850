-- The common-password blocklist, as SHA-256 of the lower-cased password so
-- that a candidate password never reaches the database in clear. Seeded with
-- the most frequent entries; the auth issue loads the full list.
CREATE TABLE common_passwords (
    sha256 bytea PRIMARY KEY
);
INSERT INTO common_passwords (sha256)
SELECT DISTINCT sha256(convert_to(lower(p), 'UTF8')) FROM (VALUES
    ('123456'), ('password'), ('12345678'), ('qwerty'), ('123456789'), ('12345'), ('1234'),
    ('111111'), ('1234567'), ('dragon'), ('123123'), ('baseball'), ('abc123'), ('football'),
    ('monkey'), ('letmein'), ('696969'), ('shadow'), ('master'), ('666666'), ('qwertyuiop'),
    ('123321'), ('mustang'), ('1234567890'), ('michael'), ('654321'), ('superman'),
    ('1qaz2wsx'), ('7777777'), ('121212'), ('000000'), ('qazwsx'), ('123qwe'), ('killer'),
    ('trustno1'), ('jordan'), ('jennifer'), ('zxcvbnm'), ('asdfgh'), ('hunter'), ('buster'),
    ('soccer'), ('harley'), ('batman'), ('andrew'), ('tigger'), ('sunshine'), ('iloveyou'),
    ('2000'), ('charlie'), ('robert'), ('thomas'), ('hockey'), ('ranger'), ('daniel'),
    ('starwars'), ('klaster'), ('112233'), ('george'), ('computer'), ('michelle'), ('jessica'),
    ('pepper'), ('1111'), ('zxcvbn'), ('555555'), ('11111111'), ('131313'), ('freedom'),
    ('777777'), ('pass'), ('maggie'), ('159753'), ('aaaaaa'), ('ginger'), ('princess'),
    ('joshua'), ('cheese'), ('amanda'), ('summer'), ('love'), ('ashley'), ('nicole'),
    ('chelsea'), ('biteme'), ('matthew'), ('access'), ('yankees'), ('987654321'), ('dallas'),
    ('austin'), ('thunder'), ('taylor'), ('matrix'), ('password1'), ('password123'),
    ('passw0rd'), ('welcome1'), ('qwerty123'), ('admin123'), ('abcd1234'), ('p@ssw0rd'),
    ('iloveyou1'), ('welcome123'), ('letmein1'), ('changeme1'), ('summer2024'), ('winter2024'),
    ('password2024'), ('password2025'), ('password2026'), ('qwerty12'), ('aa123456')
) AS v(p);
