-- gobelieve's group and relationship tables (spec §11.2), as the app server
-- writes them. Ferry reads `group` and `group_member` with --mysql; the
-- tests load this file into their own MariaDB.
CREATE TABLE IF NOT EXISTS `group` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `appid` BIGINT,
  `master` BIGINT,
  `super` TINYINT NOT NULL DEFAULT 0,
  `name` VARCHAR(255),
  `notice` VARCHAR(255),
  `deleted` TINYINT NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE IF NOT EXISTS `group_member` (
  `group_id` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `timestamp` INT,
  `nickname` VARCHAR(255),
  `mute` TINYINT DEFAULT 0,
  `deleted` TINYINT NOT NULL,
  PRIMARY KEY (`group_id`, `uid`),
  KEY `idx_group_member_uid` (`uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE IF NOT EXISTS `friend` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `friend_uid` BIGINT NOT NULL,
  `timestamp` INT NOT NULL,
  PRIMARY KEY (`appid`, `uid`, `friend_uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE IF NOT EXISTS `blacklist` (
  `appid` BIGINT NOT NULL,
  `uid` BIGINT NOT NULL,
  `friend_uid` BIGINT NOT NULL,
  `timestamp` INT NOT NULL,
  PRIMARY KEY (`appid`, `uid`, `friend_uid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
